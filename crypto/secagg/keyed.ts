/**
 * Keyed secure aggregation: Bonawitz et al.'s key setup once per training job, then every aggregation in two
 * round trips instead of four (docs/secagg.md, "Many aggregations with one key setup").
 *
 * Options as for `secAggClient`; `length` is not used (each aggregation has its own vector length). Setup (tags
 * `secagg/SESSION/setup/…`), the one-shot protocol's rounds 0 and 1: clients advertise two X25519 public keys
 * (c: long-term, for share boxes; s_0: the first aggregation's mask key) and send every other client, in an
 * AES-GCM box, Shamir shares of s_0 and of the self-mask seed b_0. The active set A_0 is the clients whose
 * boxes arrived.
 *
 * Aggregation k of the session (tags `secagg/SESSION/rR/…` with the caller's increasing round number R),
 * among the active clients A_k:
 *  masked  client u → aggregator: y = x + PRG(b_k) ± Σ_{v ∈ A_k} PRG(HKDF(X25519(s_k(u), s_k(v)))), then the
 *          public key of a fresh s_{k+1}(u) and, per other active client, a box with its shares of
 *          s_{k+1}(u) and of a fresh b_{k+1}(u)
 *  unmask  aggregator → each client of U3 (masked input arrived): U3, and every other survivor's s_{k+1}
 *          public key and box for it
 *  reveal  client → aggregator: for each w in A_k, the share of b_k(w) if w ∈ U3, else the share of s_k(w)
 * The aggregator rebuilds the survivors' self masks and, for clients that dropped, their mask keys of this
 * aggregation and their pairwise masks. Every aggregation has its own mask keys: a dropped client's revealed
 * s_k gives away its masks of aggregation k only, never those of the earlier aggregations whose self masks
 * were rebuilt (with one long-term s, a later dropout unmasked every earlier input of the client). A dropped
 * client handed out no keys for k + 1, so it is out for the rest of the session. As in the one-shot protocol,
 * the aggregator never gets both the self mask and the mask key of one client in one aggregation, and
 * t > |clients|/2 shares are needed for either. A_{k+1} is U3 minus clients the job leaves out (`restrict`).
 *
 * Everything a client sends in aggregation k except x itself (the mask, the next keys and their boxes) can be
 * drawn before x exists: `prepare(round, length)` does it, and by default each client prepares the next
 * aggregation right after one ends, in the idle time between aggregations, so `aggregate` only adds the mask
 * to x. What goes on the wire is the same; a prepared aggregation serves only that round number and that
 * active set, once.
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
import { ringAccumulate } from '../mpc/ring.ts'
import { bytesToField, fieldToBytes, randomFieldElement, SHAMIR_PRIME, shamirSplit } from '../shamir.ts'
import { agree, type KeyPair, keyPairFromSecret, newKeyPair, selfMaskSeed } from './keys.ts'
import { applyMasks, type Mask, ringView } from './mask.ts'
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
  REVEAL_RECORD,
  REVEAL_S,
  reconstruct,
  revealRecord,
  type SecAggOptions,
  setup,
  tooFew,
  u16,
  u16Bytes,
  xOf,
} from './secagg.ts'

const SHARES = 2 * KEY // a share of s ‖ a share of b
const BOX = SHARES + SEAL_OVERHEAD
/** A share box in a client's message: u16 recipient ‖ box. */
const REC_BOX = 2 + BOX
/** A share box in the unmask message: u16 sender ‖ the sender's next s public key ‖ box. */
const REC_NEXT = 2 + KEY + BOX

/** What the keys of the session's aggregation number `seq` (0, 1, …) are bound to. */
const scope = (session: string, seq: number) => `${session}/k${seq}`

/** AAD of the box from u to v holding shares of u's secrets of aggregation `seq`, bound to u's s public key. */
const boxAad = (session: string, seq: number, u: number, v: number, pub: Uint8Array) =>
  Buffer.concat([Buffer.from(`${scope(session, seq)}|${u}|${v}|`), pub])

function checkRound(round: number, last: number): void {
  if (!Number.isSafeInteger(round) || round <= last) {
    throw new SyndicateError(
      ERR_SECAGG_PARAMS,
      `aggregation rounds must be increasing integers (got ${round} after ${last}); a round number is never reused`,
    )
  }
}

/** Options of a keyed client: those of `secAggClient` and when to prepare the next aggregation. */
export interface KeyedClientOptions extends SecAggOptions {
  /**
   * Prepare aggregation `round + 1` right after aggregation `round` (default true): its mask (self mask and
   * pairwise masks, from this aggregation's keys), and the next aggregation's key pair, self-mask seed and
   * share boxes are drawn in the idle time between aggregations (a timer after the reveal, once the active
   * set is known), so `aggregate` only adds the mask to the input. False: nothing is drawn before `aggregate`
   * or an explicit `prepare`.
   */
  prepareNext?: boolean
}

/** What a client holds of one client's secrets of one aggregation: its s public key and our shares. */
interface Held {
  pub: Uint8Array
  /** The sealed shares, until opened (when first needed). */
  box?: Uint8Array
  s?: bigint
  b?: bigint
}

/** A client's keys of aggregation `seq` and what it holds of the other clients' (and its own shares). */
interface Keys {
  seq: number
  s: KeyPair
  b: bigint
  held: Map<number, Held>
  /** A masked input went out under these keys: they must never mask another (set until the next keys come). */
  spent?: boolean
}

/**
 * What an aggregation needs that does not depend on the input, drawn for the active set `active`: the mask
 * PRG(b) ± Σ pairwise masks over `length` elements (the first k elements are the mask of a k-element vector:
 * every stream starts at counter 0), and the next aggregation's keys with the message part that shares them
 * (its s public key ‖ the share boxes).
 */
interface Round {
  round: number
  seq: number
  active: number[]
  mask: RingVector
  next: { s: KeyPair; b: bigint; own: { s: bigint; b: bigint }; wire: Uint8Array }
}

/**
 * Shamir shares of s and b among `active` (our own kept), each other client's in a box only it opens:
 * u16 recipient ‖ box per client.
 */
function shareKeys(
  o: SecAggOptions,
  me: number,
  active: readonly number[],
  boxKeys: Map<number, KeyObject>,
  seq: number,
  s: KeyPair,
  b: bigint,
): { own: { s: bigint; b: bigint }; boxes: Uint8Array } {
  const sShares = shamirSplit(s.secret, o.threshold, active.map(xOf))
  const bShares = shamirSplit(b, o.threshold, active.map(xOf))
  const nonces = randomBytes(NONCE * active.length)
  const boxes = new Uint8Array((active.length - 1) * REC_BOX)
  let own = { s: 0n, b: 0n }
  let at = 0
  active.forEach((v, k) => {
    if (v === me) {
      own = { s: sShares[k].y, b: bShares[k].y }
      return
    }
    const plain = Buffer.concat([fieldToBytes(sShares[k].y), fieldToBytes(bShares[k].y)])
    const aad = boxAad(o.session, seq, me, v, s.pub)
    boxes.set(u16Bytes(v), at)
    boxes.set(seal(boxKeys.get(v)!, plain, aad, nonces.subarray(NONCE * k, NONCE * (k + 1))), at + 2)
    at += REC_BOX
  })
  return { own, boxes }
}

/** The shares of s and b in a box; undefined if it does not open or holds something else. */
function openShares(key: KeyObject, box: Uint8Array, aad: Uint8Array): { s: bigint; b: bigint } | undefined {
  const plain = open(key, box, aad)
  if (!plain || plain.length !== SHARES) return undefined
  const s = bytesToField(plain.subarray(0, KEY))
  const b = bytesToField(plain.subarray(KEY))
  return s < SHAMIR_PRIME && b < SHAMIR_PRIME ? { s, b } : undefined
}

/** A client's state after the key setup: aggregate one vector per call. */
export class KeyedSecAggClient {
  private readonly ch: PartyChannel
  private readonly o: KeyedClientOptions
  private readonly me: number
  /** The share-box key with every other client of the setup (long-term: its secret is never shared). */
  private readonly boxKeys: Map<number, KeyObject>
  private keys: Keys
  private readonly active: Set<number>
  private last = -1
  private busy = false
  /** The longest vector aggregated so far: the length a prepared mask covers. */
  private longest = 0
  /** The next aggregation's input-independent part, if drawn; used once, by that aggregation only. */
  private ready: Round | undefined
  private pending: NodeJS.Immediate | undefined

  private constructor(
    ch: PartyChannel,
    o: KeyedClientOptions,
    me: number,
    boxKeys: Map<number, KeyObject>,
    keys: Keys,
  ) {
    this.ch = ch
    this.o = o
    this.me = me
    this.boxKeys = boxKeys
    this.keys = keys
    this.active = new Set(keys.held.keys())
  }

  /**
   * The key setup (two round trips with the aggregator): a long-term share-box key pair, and the first
   * aggregation's mask key pair and self-mask seed, shared as in rounds 0 and 1 of the one-shot protocol.
   */
  static async setup(ch: PartyChannel, o: KeyedClientOptions): Promise<KeyedSecAggClient> {
    const { clients, idx } = setup(ch, o)
    if (!clients.includes(ch.self))
      throw new SyndicateError(ERR_SECAGG_PARAMS, `${ch.self} is the aggregator`)
    const tag = (step: string) => `secagg/${o.session}/setup/${step}`
    const A = o.aggregator
    const me = idx(ch.self)
    const { c, s, keys } = await advertise(ch, A, tag, clients, o.threshold)
    const u1 = [...keys.keys()]
    const boxKeys = new Map<number, KeyObject>()
    for (const v of u1)
      if (v !== me) boxKeys.set(v, agree(c.priv, keys.get(v)!.c, o.session, 'share-box', 32))
    const b = randomFieldElement()
    const { own, boxes } = shareKeys(o, me, u1, boxKeys, 0, s, b)
    await ch.send(A, tag('shares'), boxes)
    const inbox = await ch.recv(A, tag('inbox'))
    if (inbox.length % REC_BOX !== 0) throw badMessage(A, 'inbox length')
    const held = new Map<number, Held>([[me, { pub: s.pub, ...own }]])
    for (let off = 0; off < inbox.length; off += REC_BOX) {
      const u = u16(inbox, off)
      const key = boxKeys.get(u)
      if (!key || held.has(u)) throw badMessage(A, `inbox entry from ${u}`)
      const pub = keys.get(u)!.s
      const sh = openShares(key, inbox.subarray(off + 2, off + REC_BOX), boxAad(o.session, 0, u, me, pub))
      if (!sh) throw badMessage(ch.parties[u], 'a share box that does not open')
      held.set(u, { pub, ...sh })
    }
    if (held.size < o.threshold) throw tooFew('shared keys', held.size, o.threshold)
    return new KeyedSecAggClient(ch, o, me, boxKeys, { seq: 0, s, b, held })
  }

  /**
   * Leaves out every client not in `parties` from now on (e.g. parties the job itself dropped); every party of
   * the session must restrict alike before the next aggregation.
   */
  restrict(parties: readonly string[]): void {
    for (const i of [...this.active]) if (!parties.includes(this.ch.parties[i])) this.active.delete(i)
  }

  /**
   * Draws now what the next aggregation, `round` (larger than every round so far), needs apart from the
   * input, for vectors of up to `length` elements: its mask and the next aggregation's keys and share boxes,
   * so that `aggregate(input, round)` only adds the mask. Nothing is sent. It serves only that round, with the
   * active set of now (a `restrict` in between, another round number or a longer vector discards it), once.
   */
  prepare(round: number, length: number): void {
    checkRound(round, this.last)
    if (!Number.isInteger(length) || length < 1) {
      throw new SyndicateError(ERR_SECAGG_PARAMS, `vector length must be a positive integer, got ${length}`)
    }
    if (this.busy) {
      throw new SyndicateError(ERR_SECAGG_PARAMS, 'cannot prepare while an aggregation is running')
    }
    this.checkActive()
    this.checkUnspent()
    this.cancelPending()
    this.ready = this.draw(round, new BigUint64Array(length))
  }

  /** The round whose input-independent part is drawn and waiting (undefined: none). */
  get preparedRound(): number | undefined {
    return this.ready?.round
  }

  /**
   * Sends this client's masked `input` for aggregation `round` (increasing) and reveals its unmasking shares.
   * Every client of one aggregation passes a vector of the same length (the aggregator checks it).
   */
  async aggregate(input: RingVector, round: number): Promise<void> {
    const { ch, o, me } = this
    checkRound(round, this.last)
    if (this.busy) throw new SyndicateError(ERR_SECAGG_PARAMS, 'an aggregation of this session is running')
    this.last = round
    this.cancelPending()
    // Taken out before anything else: a mask never serves two aggregations.
    const ready = this.ready
    this.ready = undefined
    if (input.length < 1) throw new SyndicateError(ERR_SECAGG_PARAMS, 'cannot aggregate an empty vector')
    this.checkActive()
    this.checkUnspent()
    this.busy = true
    try {
      this.longest = Math.max(this.longest, input.length)
      const A = o.aggregator
      const tag = (step: string) => `secagg/${o.session}/r${round}/${step}`
      const active = [...this.active]
      // The message: the masked vector, written in place, then the next aggregation's keys.
      const vec = 8 * input.length
      const msg = new Uint8Array(vec + KEY + (active.length - 1) * REC_BOX)
      const y = new BigUint64Array(msg.buffer, 0, input.length)
      let r: Round
      if (
        ready &&
        ready.round === round &&
        ready.seq === this.keys.seq &&
        ready.mask.length >= input.length &&
        ready.active.length === active.length &&
        ready.active.every((v, k) => v === active[k])
      ) {
        r = ready
        ringAccumulate(input, [{ x: ready.mask.subarray(0, input.length) }], y)
      } else {
        r = this.draw(round, input, y)
      }
      msg.set(r.next.wire, vec)
      this.keys.spent = true
      await ch.send(A, tag('masked'), msg)

      const um = await ch.recv(A, tag('unmask'))
      const count = um.length >= 2 ? u16(um, 0) : -1
      if (count < o.threshold || um.length !== 2 + 2 * count + (count - 1) * REC_NEXT) {
        throw badMessage(A, 'unmask message length')
      }
      const u3 = new Set<number>()
      for (let k = 0; k < count; k++) {
        const w = u16(um, 2 + 2 * k)
        if (!this.active.has(w) || u3.has(w)) throw badMessage(A, `unmask entry ${w}`)
        u3.add(w)
      }
      if (!u3.has(me)) throw badMessage(A, 'an unmask list without us')
      // The survivors' keys of the next aggregation (opened when that aggregation is drawn).
      const next = r.next
      const held = new Map<number, Held>([[me, { pub: next.s.pub, ...next.own }]])
      for (let off = 2 + 2 * count; off < um.length; off += REC_NEXT) {
        const u = u16(um, off)
        if (!u3.has(u) || held.has(u)) throw badMessage(A, `next-key record from ${u}`)
        held.set(u, { pub: um.slice(off + 2, off + 2 + KEY), box: um.slice(off + 2 + KEY, off + REC_NEXT) })
      }
      // Exactly one secret's share per active client: the self mask's for the survivors, this aggregation's
      // mask key for the dropped, who stay out from now on.
      const reveal = new Uint8Array(active.length * REVEAL_RECORD)
      active.forEach((w, k) => {
        const h = this.keys.held.get(w)!
        const b = u3.has(w)
        revealRecord(w, b ? REVEAL_B : REVEAL_S, b ? h.b! : h.s!, reveal, k * REVEAL_RECORD)
        if (!b) this.active.delete(w)
      })
      this.keys = { seq: this.keys.seq + 1, s: next.s, b: next.b, held }
      await ch.send(A, tag('reveal'), reveal)
    } finally {
      this.busy = false
    }
    if (this.o.prepareNext !== false) this.prepareLater(round + 1)
  }

  /**
   * The input-independent part of the next aggregation for the active set of now, its mask added onto `base`
   * (zeros when preparing; the input itself when drawn on demand, which saves one pass) and written into
   * `out` if given. Opens the boxes of this aggregation's shares on first use.
   */
  private draw(round: number, base: RingVector, out?: RingVector): Round {
    const { o, me, keys } = this
    const active = [...this.active]
    for (const v of active) {
      const h = keys.held.get(v)
      if (!h) throw badMessage(o.aggregator, `no keys of client ${v} for this aggregation`)
      if (h.s !== undefined) continue
      const sh = openShares(this.boxKeys.get(v)!, h.box!, boxAad(o.session, keys.seq, v, me, h.pub))
      if (!sh) throw badMessage(this.ch.parties[v], 'a share box that does not open')
      h.s = sh.s
      h.b = sh.b
      h.box = undefined
    }
    const sc = scope(o.session, keys.seq)
    const masks: Mask[] = [{ seed: selfMaskSeed(keys.b, sc) }]
    for (const v of active) {
      if (v !== me)
        masks.push({
          seed: agree(keys.s.priv, keys.held.get(v)!.pub, sc, 'pair-mask', SEED_BYTES),
          sub: me > v,
        })
    }
    const mask = applyMasks(base, masks, out)
    const s = newKeyPair()
    const b = randomFieldElement()
    const { own, boxes } = shareKeys(o, me, active, this.boxKeys, keys.seq + 1, s, b)
    return { round, seq: keys.seq, active, mask, next: { s, b, own, wire: Buffer.concat([s.pub, boxes]) } }
  }

  /** Prepares `round` once the event loop is idle (after the reveal has been handed to the transport). */
  private prepareLater(round: number): void {
    if (!this.active.has(this.me) || this.active.size < this.o.threshold) return
    this.pending = setImmediate(() => {
      this.pending = undefined
      try {
        this.prepare(round, this.longest)
      } catch {
        // Nothing prepared: the next aggregation draws on demand (and reports what is wrong, if anything).
      }
    })
    this.pending.unref()
  }

  private cancelPending(): void {
    if (this.pending) clearImmediate(this.pending)
    this.pending = undefined
  }

  /** After an aggregation that failed midway its keys have masked an input once: never again. */
  private checkUnspent(): void {
    if (this.keys.spent) {
      throw new SyndicateError(
        ERR_SECAGG_PARAMS,
        `an earlier aggregation of ${this.ch.self} in this session failed after its masked input went out; start a new key setup`,
      )
    }
  }

  private checkActive(): void {
    if (!this.active.has(this.me)) {
      throw new SyndicateError(
        ERR_SECAGG_PARAMS,
        `${this.ch.self} was declared dropped earlier in this session and cannot take part again; start a new key setup`,
      )
    }
  }
}

/** The aggregator's state after the key setup: one sum per call. */
export class KeyedSecAggAggregator {
  private readonly ch: PartyChannel
  private readonly o: AggregatorOptions
  /** Every active client's s public key of aggregation `seq`. */
  private pubs: Map<number, Uint8Array>
  private active: Set<number>
  private seq = 0
  private last = -1

  private constructor(
    ch: PartyChannel,
    o: AggregatorOptions,
    pubs: Map<number, Uint8Array>,
    active: number[],
  ) {
    this.ch = ch
    this.o = o
    this.pubs = pubs
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
    const { keys, u2 } = await gatherKeys(ch, clients, o.threshold, tag, wait, REC_BOX)
    const pubs = new Map(u2.map((p) => [idx(p), keys.get(idx(p))!.s]))
    return new KeyedSecAggAggregator(ch, o, pubs, u2.map(idx))
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
    const active = [...this.active].map((i) => ch.parties[i])
    const vec = 8 * length
    const sum: RingVector = new BigUint64Array(length)
    const masked = await collect(ch, active, tag('masked'), wait, (p, m) => {
      if (m.length !== vec + KEY + (active.length - 1) * REC_BOX)
        throw badMessage(p, `masked input of ${m.length} bytes`)
      ringAccumulate(sum, [{ x: ringView(m.subarray(0, vec)) }], sum)
    })
    if (masked.size < o.threshold)
      throw tooFew('masked inputs', masked.size, o.threshold, missing(active, masked))
    const u3 = [...masked.keys()]
    // Each survivor's keys of the next aggregation: to every other survivor, its s public key and their box.
    const routed = new Map<number, Uint8Array[]>()
    for (const p of u3) {
      const u = idx(p)
      const m = masked.get(p)!
      const pub = m.subarray(vec, vec + KEY)
      const seen = new Set<number>()
      for (let off = vec + KEY; off < m.length; off += REC_BOX) {
        const v = u16(m, off)
        if (!this.active.has(v) || v === u || seen.has(v)) throw badMessage(p, `share box for ${v}`)
        seen.add(v)
        if (!masked.has(ch.parties[v])) continue
        const list = routed.get(v) ?? []
        list.push(Buffer.concat([u16Bytes(u), pub, m.subarray(off + 2, off + REC_BOX)]))
        routed.set(v, list)
      }
    }
    const head = Buffer.concat([u16Bytes(u3.length), ...u3.map((p) => u16Bytes(idx(p)))])
    await Promise.all(
      u3.map((p) => ch.send(p, tag('unmask'), Buffer.concat([head, ...(routed.get(idx(p)) ?? [])]))),
    )

    // The first `threshold` reveals suffice: the others are not waited for.
    const reveals = await collect(ch, u3, tag('reveal'), wait, undefined, o.threshold)
    if (reveals.size < o.threshold)
      throw tooFew('unmasking shares', reveals.size, o.threshold, missing(u3, reveals))
    const { quorum, secretOf } = reconstruct(ch, reveals, o.threshold, active, (p) => masked.has(p))
    const sc = scope(o.session, this.seq)
    const masks: Mask[] = u3.map((p) => ({ seed: selfMaskSeed(secretOf(p), sc), sub: true }))
    for (const p of active) {
      if (masked.has(p)) continue
      // p dropped: rebuild its mask key of this aggregation (only this one's) and remove its pairwise masks
      // from the survivors' inputs. It sent no keys for the next aggregation, so it is out from now on.
      const w = idx(p)
      const sw: KeyPair = keyPairFromSecret(secretOf(p))
      if (!equal(sw.pub, this.pubs.get(w)!)) {
        throw badMessage(quorum[0][0], `shares of ${p}'s mask key that do not rebuild its advertised key`)
      }
      for (const q of u3) {
        const v = idx(q)
        masks.push({ seed: agree(sw.priv, this.pubs.get(v)!, sc, 'pair-mask', SEED_BYTES), sub: v < w })
      }
    }
    this.active = new Set(u3.map(idx))
    this.pubs = new Map(u3.map((p) => [idx(p), masked.get(p)!.slice(vec, vec + KEY)]))
    this.seq++
    return { sum: applyMasks(sum, masks), contributors: u3 }
  }
}
