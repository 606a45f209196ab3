/**
 * Keyed secure aggregation: Bonawitz et al.'s key setup once per training job, then every aggregation in two
 * round trips instead of four (docs/secagg.md, "Many aggregations with one key setup").
 *
 * Options as for `secAggClient`; `length` is not used (each aggregation has its own vector length). Setup (tags
 * `secagg/SESSION/setup/…`): clients advertise two X25519 public keys (c: share boxes, s: pairwise
 * masks) and send every other client, in an AES-GCM box, a Shamir share of their s secret. U is the set of
 * clients whose boxes arrived.
 *
 * Aggregation r (tags `secagg/SESSION/rR/…`), among the active clients A_r (U minus every client declared
 * dropped in an earlier aggregation):
 *  masked  client → aggregator: y = x + PRG(b_r) ± Σ_{v ∈ A_r} PRG_r(HKDF(X25519(s_u, s_v))) and, in boxes,
 *          Shamir shares of the fresh self-mask seed b_r for every other active client
 *  unmask  aggregator → each client of U3 (masked input arrived): U3 and the boxes addressed to it
 *  reveal  client → aggregator: for each w in A_r, the share of b_r(w) if w ∈ U3, else the share of s_w
 * The aggregator rebuilds the survivors' self masks and, for clients that dropped, their s secrets and their
 * pairwise masks. A client whose s was revealed is **dropped for the rest of the session**: its pairwise masks
 * of every later aggregation are known to the aggregator, so honest clients leave it out of A_r from then on
 * and refuse to reveal a self-mask share for it. As in the one-shot protocol, the aggregator never gets both
 * the self mask and s of one client in one aggregation, and t > |U|/2 shares are needed for either.
 */
import { type KeyObject, randomBytes } from 'node:crypto'
import {
  AEAD_NONCE_BYTES as NONCE,
  aeadOpen as open,
  AEAD_OVERHEAD as SEAL_OVERHEAD,
  aeadSeal as seal,
} from '../aead.ts'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import type { RingVector } from '../fixed.ts'
import { SEED_BYTES } from '../mpc/prg.ts'
import { ringAdd } from '../mpc/ring.ts'
import { ringFromBytes, ringToBytes } from '../mpc/wire.ts'
import { x25519 } from '../psi/x25519.ts'
import { bytesToField, fieldToBytes, randomFieldElement, SHAMIR_PRIME, shamirSplit } from '../shamir.ts'
import { agree, derive, type KeyPair, keyPairFromSecret, selfMaskSeed } from './keys.ts'
import { applyMasks, type Mask } from './mask.ts'
import {
  type AggregateResult,
  type AggregatorOptions,
  advertise,
  badMessage,
  collect,
  ERR_SECAGG_PARAMS,
  equal,
  gatherKeys,
  KEY,
  missing,
  REVEAL_B,
  REVEAL_S,
  reconstruct,
  revealRecord,
  routeBoxes,
  type SecAggOptions,
  setup,
  tooFew,
  u16,
  u16Bytes,
  xOf,
} from './secagg.ts'

const BOX = KEY + SEAL_OVERHEAD
const REC_BOX = 2 + BOX

const boxAad = (session: string, step: string, u: number, v: number) =>
  new TextEncoder().encode(`${session}|${step}|${u}|${v}`)

/** The pairwise mask key of two clients, from the raw X25519 agreement of their s keys (derived once). */
const pairKey = (shared: Uint8Array, session: string): KeyObject =>
  derive(shared, session, 'pair-mask', SEED_BYTES)

/**
 * The PRG counter block of aggregation `round`: the round in the high 64 bits, so every round's keystream under
 * one pair key starts 2^64 blocks apart from every other's (a vector is far shorter).
 */
function roundIv(round: number): Uint8Array {
  const iv = new Uint8Array(16)
  new DataView(iv.buffer).setBigUint64(0, BigInt(round))
  return iv
}

function checkRound(round: number, last: number): void {
  if (!Number.isSafeInteger(round) || round <= last) {
    throw new SyndicateError(
      ERR_SECAGG_PARAMS,
      `aggregation rounds must be increasing integers (got ${round} after ${last}); a round number is never reused`,
    )
  }
}

/** A client's state after the key setup: aggregate one vector per call. */
export class KeyedSecAggClient {
  private readonly ch: PartyChannel
  private readonly o: SecAggOptions
  private readonly me: number
  private readonly boxKeys: Map<number, KeyObject>
  /** Raw X25519(s_me, s_v) per active peer. */
  private readonly pairs: Map<number, KeyObject>
  /** Shares of every client's s secret (own included). */
  private readonly sShares: Map<number, bigint>
  private readonly active: Set<number>
  private last = -1

  private constructor(
    ch: PartyChannel,
    o: SecAggOptions,
    me: number,
    boxKeys: Map<number, KeyObject>,
    pairs: Map<number, KeyObject>,
    sShares: Map<number, bigint>,
  ) {
    this.ch = ch
    this.o = o
    this.me = me
    this.boxKeys = boxKeys
    this.pairs = pairs
    this.sShares = sShares
    this.active = new Set(sShares.keys())
  }

  /** The key setup (two round trips with the aggregator). */
  static async setup(ch: PartyChannel, o: SecAggOptions): Promise<KeyedSecAggClient> {
    const { clients, idx } = setup(ch, o)
    if (!clients.includes(ch.self))
      throw new SyndicateError(ERR_SECAGG_PARAMS, `${ch.self} is the aggregator`)
    const tag = (step: string) => `secagg/${o.session}/setup/${step}`
    const A = o.aggregator
    const me = idx(ch.self)
    const { c, s, keys } = await advertise(ch, A, tag, clients, o.threshold)

    const u1 = [...keys.keys()]
    const shares = shamirSplit(s.secret, o.threshold, u1.map(xOf))
    const sShares = new Map<number, bigint>()
    const boxKeys = new Map<number, KeyObject>()
    const boxes: Uint8Array[] = []
    const nonces = randomBytes(NONCE * u1.length)
    u1.forEach((v, k) => {
      if (v === me) {
        sShares.set(me, shares[k].y)
        return
      }
      const key = agree(c.priv, keys.get(v)!.c, o.session, 'share-box', 32)
      boxKeys.set(v, key)
      const box = seal(
        key,
        fieldToBytes(shares[k].y),
        boxAad(o.session, 'setup', me, v),
        nonces.subarray(NONCE * k, NONCE * (k + 1)),
      )
      boxes.push(Buffer.concat([u16Bytes(v), box]))
    })
    await ch.send(A, tag('shares'), Buffer.concat(boxes))
    const inbox = await ch.recv(A, tag('inbox'))
    if (inbox.length % REC_BOX !== 0) throw badMessage(A, 'inbox length')
    for (let off = 0; off < inbox.length; off += REC_BOX) {
      const u = u16(inbox, off)
      const key = boxKeys.get(u)
      if (!key || sShares.has(u)) throw badMessage(A, `inbox entry from ${u}`)
      const y = openShare(key, inbox.subarray(off + 2, off + REC_BOX), boxAad(o.session, 'setup', u, me))
      if (y === undefined) throw badMessage(ch.parties[u], 'a share box that does not open')
      sShares.set(u, y)
    }
    if (sShares.size < o.threshold) throw tooFew('shared keys', sShares.size, o.threshold)
    const pairs = new Map<number, KeyObject>()
    for (const v of sShares.keys())
      if (v !== me) pairs.set(v, pairKey(x25519(s.priv, keys.get(v)!.s), o.session))
    return new KeyedSecAggClient(ch, o, me, boxKeys, pairs, sShares)
  }

  /**
   * Leaves out every client not in `parties` from now on (e.g. parties the job itself dropped); every party of
   * the session must restrict alike before the next aggregation.
   */
  restrict(parties: readonly string[]): void {
    for (const i of [...this.active]) if (!parties.includes(this.ch.parties[i])) this.active.delete(i)
  }

  /**
   * Sends this client's masked `input` for aggregation `round` (increasing) and reveals its unmasking shares.
   * Every client of one aggregation passes a vector of the same length (the aggregator checks it).
   */
  async aggregate(input: RingVector, round: number): Promise<void> {
    const { ch, o, me } = this
    checkRound(round, this.last)
    this.last = round
    if (input.length < 1) throw new SyndicateError(ERR_SECAGG_PARAMS, 'cannot aggregate an empty vector')
    if (!this.active.has(me)) {
      throw new SyndicateError(
        ERR_SECAGG_PARAMS,
        `${ch.self} was declared dropped earlier in this session and cannot take part again; start a new key setup`,
      )
    }
    const A = o.aggregator
    const tag = (step: string) => `secagg/${o.session}/r${round}/${step}`
    const step = `r${round}`
    const active = [...this.active]
    const b = randomFieldElement()
    const bShares = shamirSplit(b, o.threshold, active.map(xOf))
    const own = new Map<number, bigint>()
    const nonces = randomBytes(NONCE * active.length)
    const boxes: Uint8Array[] = []
    active.forEach((v, k) => {
      if (v === me) {
        own.set(me, bShares[k].y)
        return
      }
      const box = seal(
        this.boxKeys.get(v)!,
        fieldToBytes(bShares[k].y),
        boxAad(o.session, step, me, v),
        nonces.subarray(NONCE * k, NONCE * (k + 1)),
      )
      boxes.push(Buffer.concat([u16Bytes(v), box]))
    })
    const iv = roundIv(round)
    const masks: Mask[] = [{ seed: selfMaskSeed(b, `${o.session}/${step}`) }]
    for (const v of active) if (v !== me) masks.push({ seed: this.pairs.get(v)!, iv, sub: me > v })
    const y = applyMasks(input, masks)
    await ch.send(A, tag('masked'), Buffer.concat([ringToBytes(y), ...boxes]))

    const um = await ch.recv(A, tag('unmask'))
    const count = um.length >= 2 ? u16(um, 0) : -1
    if (count < o.threshold || um.length !== 2 + 2 * count + (count - 1) * REC_BOX) {
      throw badMessage(A, 'unmask message length')
    }
    const u3 = new Set<number>()
    for (let k = 0; k < count; k++) {
      const w = u16(um, 2 + 2 * k)
      if (!this.active.has(w) || u3.has(w)) throw badMessage(A, `unmask entry ${w}`)
      u3.add(w)
    }
    if (!u3.has(me)) throw badMessage(A, 'an unmask list without us')
    for (let off = 2 + 2 * count; off < um.length; off += REC_BOX) {
      const u = u16(um, off)
      if (!u3.has(u) || own.has(u)) throw badMessage(A, `self-mask share box from ${u}`)
      const share = openShare(
        this.boxKeys.get(u)!,
        um.subarray(off + 2, off + REC_BOX),
        boxAad(o.session, step, u, me),
      )
      if (share === undefined) throw badMessage(ch.parties[u], 'a self-mask share box that does not open')
      own.set(u, share)
    }
    // Exactly one secret's share per active client: the self mask's for the survivors, s for the dropped, who
    // stay out of every later aggregation.
    const out: Uint8Array[] = []
    for (const w of active) {
      const b = u3.has(w)
      out.push(revealRecord(w, b ? REVEAL_B : REVEAL_S, b ? own.get(w)! : this.sShares.get(w)!))
      if (!b) this.active.delete(w)
    }
    await ch.send(A, tag('reveal'), Buffer.concat(out))
  }
}

/** The aggregator's state after the key setup: one sum per call. */
export class KeyedSecAggAggregator {
  private readonly ch: PartyChannel
  private readonly o: AggregatorOptions
  private readonly sPubs: Map<number, Uint8Array>
  private readonly active: Set<number>
  private last = -1

  private constructor(
    ch: PartyChannel,
    o: AggregatorOptions,
    sPubs: Map<number, Uint8Array>,
    active: number[],
  ) {
    this.ch = ch
    this.o = o
    this.sPubs = sPubs
    this.active = new Set(active)
  }

  /** As `KeyedSecAggClient.restrict`. */
  restrict(parties: readonly string[]): void {
    for (const i of [...this.active]) if (!parties.includes(this.ch.parties[i])) this.active.delete(i)
  }

  /** The clients that can still take part (every later aggregation needs `threshold` of them). */
  get clients(): string[] {
    return [...this.active].map((i) => this.ch.parties[i])
  }

  static async setup(ch: PartyChannel, o: AggregatorOptions): Promise<KeyedSecAggAggregator> {
    const { clients, idx } = setup(ch, o)
    if (ch.self !== o.aggregator)
      throw new SyndicateError(ERR_SECAGG_PARAMS, `${ch.self} is not the aggregator`)
    const tag = (step: string) => `secagg/${o.session}/setup/${step}`
    const wait = o.roundTimeoutMs ?? 30_000
    const _name = (i: number) => ch.parties[i]
    const { keys, u2 } = await gatherKeys(ch, clients, o.threshold, tag, wait, REC_BOX)
    const sPubs = new Map(u2.map((p) => [idx(p), keys.get(idx(p))!.s]))
    return new KeyedSecAggAggregator(ch, o, sPubs, u2.map(idx))
  }

  /** The sum of aggregation `round` (increasing) of `length`-element vectors over the clients whose input arrived. */
  async aggregate(round: number, length: number): Promise<AggregateResult> {
    const { ch, o } = this
    checkRound(round, this.last)
    this.last = round
    if (!Number.isInteger(length) || length < 1) {
      throw new SyndicateError(ERR_SECAGG_PARAMS, `vector length must be a positive integer, got ${length}`)
    }
    const tag = (step: string) => `secagg/${o.session}/r${round}/${step}`
    const wait = o.roundTimeoutMs ?? 30_000
    const idx = (p: string) => ch.parties.indexOf(p)
    const name = (i: number) => ch.parties[i]
    const active = [...this.active].map(name)
    const vec = 8 * length
    let sum: RingVector = new BigUint64Array(length)
    const masked = await collect(ch, active, tag('masked'), wait, (p, m) => {
      if (m.length !== vec + (active.length - 1) * REC_BOX)
        throw badMessage(p, `masked input of ${m.length} bytes`)
      sum = ringAdd(sum, ringFromBytes(m.subarray(0, vec), length, p, tag('masked')))
    })
    if (masked.size < o.threshold)
      throw tooFew('masked inputs', masked.size, o.threshold, missing(active, masked))
    const u3 = [...masked.keys()]
    const boxes = new Map(u3.map((p) => [p, masked.get(p)!.subarray(vec)]))
    const routed = routeBoxes(ch, boxes, active.length - 1, REC_BOX, (v) => this.active.has(v))
    const head = Buffer.concat([u16Bytes(u3.length), ...u3.map((p) => u16Bytes(idx(p)))])
    await Promise.all(
      u3.map((p) => ch.send(p, tag('unmask'), Buffer.concat([head, ...(routed.get(idx(p)) ?? [])]))),
    )

    const reveals = await collect(ch, u3, tag('reveal'), wait)
    if (reveals.size < o.threshold)
      throw tooFew('unmasking shares', reveals.size, o.threshold, missing(u3, reveals))
    const { quorum, secretOf } = reconstruct(ch, reveals, o.threshold, active, (p) => masked.has(p))
    const iv = roundIv(round)
    const masks: Mask[] = u3.map((p) => ({
      seed: selfMaskSeed(secretOf(p), `${o.session}/r${round}`),
      sub: true,
    }))
    for (const p of active) {
      if (masked.has(p)) continue
      // p dropped: rebuild its s key, remove its pairwise masks from the survivors' inputs, and leave it out
      // of every later aggregation (those masks are no longer secret from us).
      const w = idx(p)
      const sw: KeyPair = keyPairFromSecret(secretOf(p))
      if (!equal(sw.pub, this.sPubs.get(w)!)) {
        throw badMessage(quorum[0][0], `shares of ${p}'s mask key that do not rebuild its advertised key`)
      }
      for (const q of u3) {
        const v = idx(q)
        masks.push({ seed: pairKey(x25519(sw.priv, this.sPubs.get(v)!), o.session), iv, sub: v < w })
      }
      this.active.delete(w)
    }
    return { sum: applyMasks(sum, masks), contributors: u3 }
  }
}

function openShare(key: KeyObject, box: Uint8Array, aad: Uint8Array): bigint | undefined {
  const plain = open(key, box, aad)
  if (!plain || plain.length !== KEY) return undefined
  const y = bytesToField(plain)
  return y < SHAMIR_PRIME ? y : undefined
}
