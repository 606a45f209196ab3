/**
 * Secure aggregation after Bonawitz et al. (CCS 2017), semi-honest variant: n clients and an aggregator on one
 * party channel. The aggregator learns the sum (in Z(2^64)) of the vectors of the clients that survive to the
 * masked-input round and nothing else about any vector, as long as at least `threshold` clients reach the
 * unmasking round. docs/secagg.md has the rounds, the threshold argument and what a dropout costs.
 *
 * Rounds (tags `secagg/SESSION/…`):
 *  0 adv     client → aggregator: two X25519 public keys (c: encryption, s: mask agreement)
 *    keys    aggregator → clients: every advertised key pair (U1)
 *  1 shares  client → aggregator: Shamir shares of its s secret and self-mask seed b, one AES-GCM box per peer
 *    inbox   aggregator → clients: the boxes addressed to each client (from U2)
 *  2 masked  client → aggregator: x + PRG(b) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv)   (mod 2^64)
 *    unmask  aggregator → clients: the clients whose masked input arrived (U3)
 *  3 reveal  client → aggregator: for each w in U2, the share of b_w if w ∈ U3, else the share of s_w
 *
 * Rounds 0 and 1 do not depend on the input. A client computes its round-2 masks while the aggregator gathers
 * round 1 (over U1, correcting for U1 \ U2 afterwards), and the aggregator adds masked inputs up as they arrive:
 * the same messages as computing them after each round, with less computation after each wait.
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
import { ringToBytes } from '../mpc/wire.ts'
import {
  bytesToField,
  combineWith,
  fieldToBytes,
  lagrangeAtZero,
  randomFieldElement,
  SHAMIR_PRIME,
  shamirSplit,
} from '../shamir.ts'
import { agree, type KeyPair, keyPairFromSecret, newKeyPair, selfMaskSeed } from './keys.ts'
import { applyMasks, type Mask, ringView } from './mask.ts'

export interface SecAggOptions {
  /** Unique per aggregation; prefixes tags and binds every derived key. */
  session: string
  /** The party that aggregates; every other party of the channel is a client. */
  aggregator: string
  /** Minimum number of clients that must survive each round (the Shamir threshold); > clients/2. */
  threshold: number
  /** Length of every client's vector. */
  length: number
}

export interface AggregatorOptions extends SecAggOptions {
  /** How long the aggregator waits for stragglers in each round before declaring them dropped (default 30 s). */
  roundTimeoutMs?: number
}

export interface AggregateResult {
  /** Σ of the contributors' vectors mod 2^64. */
  sum: RingVector
  /** Clients whose vectors are in the sum (U3). */
  contributors: string[]
}

export const ERR_SECAGG_PARAMS = 'ERR_SECAGG_PARAMS'
export const ERR_SECAGG_TOO_FEW = 'ERR_SECAGG_TOO_FEW'
export const ERR_SECAGG_BAD_MESSAGE = 'ERR_SECAGG_BAD_MESSAGE'

export const KEY = 32
const ADV = 2 * KEY
const SHARE_PLAIN = 2 * KEY // share of s || share of b
const BOX = SHARE_PLAIN + SEAL_OVERHEAD
const REC_KEYS = 2 + ADV
const REC_BOX = 2 + BOX
const REC_REVEAL = 2 + 1 + KEY
export const REVEAL_B = 0
export const REVEAL_S = 1

export function badMessage(from: string, what: string): SyndicateError {
  return new SyndicateError(
    ERR_SECAGG_BAD_MESSAGE,
    `secure aggregation: ${from} sent a malformed message (${what}); abort and check that party`,
    { party: from },
  )
}

export function setup(ch: PartyChannel, o: SecAggOptions) {
  const clients = ch.parties.filter((p) => p !== o.aggregator)
  if (!ch.parties.includes(o.aggregator)) {
    throw new SyndicateError(ERR_SECAGG_PARAMS, `aggregator ${o.aggregator} is not a party of the channel`)
  }
  if (!Number.isInteger(o.threshold) || o.threshold <= clients.length / 2 || o.threshold > clients.length) {
    throw new SyndicateError(
      ERR_SECAGG_PARAMS,
      `threshold must be an integer in (${clients.length / 2}, ${clients.length}] for ${clients.length} clients, got ${o.threshold}`,
    )
  }
  if (!Number.isInteger(o.length) || o.length < 1) {
    throw new SyndicateError(ERR_SECAGG_PARAMS, `vector length must be a positive integer, got ${o.length}`)
  }
  const idx = (p: string) => ch.parties.indexOf(p)
  return { clients, idx, tag: (step: string) => `secagg/${o.session}/${step}` }
}

/** Shamir x-coordinate of a party: its index in the channel's party list, plus one. */
export const xOf = (i: number) => i + 1

/** AAD of the share box from client index u to client index v. */
const boxAad = (session: string, u: number, v: number) => new TextEncoder().encode(`${session}|${u}|${v}`)

function maskSeed(s: KeyPair, peerS: Uint8Array, session: string): KeyObject {
  return agree(s.priv, peerS, session, 'pair-mask', SEED_BYTES)
}

/** Runs one client; resolves once its part is done (it learns nothing; the sum goes to the aggregator). */
export async function secAggClient(ch: PartyChannel, input: RingVector, o: SecAggOptions): Promise<void> {
  const { clients, idx, tag } = setup(ch, o)
  if (!clients.includes(ch.self)) throw new SyndicateError(ERR_SECAGG_PARAMS, `${ch.self} is the aggregator`)
  if (input.length !== o.length) {
    throw new SyndicateError(
      ERR_SECAGG_PARAMS,
      `input has ${input.length} elements, the job says ${o.length}`,
    )
  }
  const A = o.aggregator
  const me = idx(ch.self)

  // Round 0: advertise keys; learn U1.
  const { c, s, keys } = await advertise(ch, A, tag, clients, o.threshold)

  // Round 1: share s and the self-mask seed b with every client in U1, each share in a box only its holder opens.
  const b = randomFieldElement()
  const u1 = [...keys.keys()]
  const sShares = shamirSplit(s.secret, o.threshold, u1.map(xOf))
  const bShares = shamirSplit(b, o.threshold, u1.map(xOf))
  const held = new Map<number, { s: bigint; b: bigint }>()
  // One box key per pair serves both directions (X25519 agreement is symmetric; the AAD fixes the direction).
  const boxKeys = new Map<number, KeyObject>()
  const boxes: Uint8Array[] = []
  const nonces = randomBytes(NONCE * u1.length)
  u1.forEach((v, k) => {
    if (v === me) {
      held.set(me, { s: sShares[k].y, b: bShares[k].y })
      return
    }
    const key = agree(c.priv, keys.get(v)!.c, o.session, 'share-box', 32)
    boxKeys.set(v, key)
    const plain = Buffer.concat([fieldToBytes(sShares[k].y), fieldToBytes(bShares[k].y)])
    boxes.push(
      Buffer.concat([
        u16Bytes(v),
        seal(key, plain, boxAad(o.session, me, v), nonces.subarray(NONCE * k, NONCE * (k + 1))),
      ]),
    )
  })
  await ch.send(A, tag('shares'), Buffer.concat(boxes))
  // Let the transport flush the boxes (it may write after pending callbacks) before computing for a while.
  await new Promise((r) => setImmediate(r))

  // While the aggregator gathers every client's boxes: the masks of round 2 with every client of U1 (U2 ⊆ U1;
  // the masks of clients that drop before sharing are taken out again below). Pairwise masks cancel in the sum;
  // the self mask hides x if s_u is ever revealed. What is sent is the same as when computed after the inbox.
  const seeds = new Map<number, KeyObject>()
  for (const v of u1) if (v !== me) seeds.set(v, maskSeed(s, keys.get(v)!.s, o.session))
  let y = applyMasks(input, [
    { seed: selfMaskSeed(b, o.session) },
    ...[...seeds].map(([v, seed]) => ({ seed, sub: me > v })),
  ])

  const inbox = await ch.recv(A, tag('inbox'))
  if (inbox.length % REC_BOX !== 0) throw badMessage(A, 'inbox length')
  for (let off = 0; off < inbox.length; off += REC_BOX) {
    const u = u16(inbox, off)
    const key = boxKeys.get(u)
    if (!key || held.has(u)) throw badMessage(A, `inbox entry from ${u}`)
    const plain = open(key, inbox.subarray(off + 2, off + REC_BOX), boxAad(o.session, u, me))
    if (!plain) throw badMessage(ch.parties[u], 'a share box that does not open')
    const sy = bytesToField(plain.subarray(0, KEY))
    const by = bytesToField(plain.subarray(KEY))
    if (sy >= SHAMIR_PRIME || by >= SHAMIR_PRIME) throw badMessage(ch.parties[u], 'a share outside the field')
    held.set(u, { s: sy, b: by })
  }
  const u2 = [...held.keys()]
  if (u2.length < o.threshold) throw tooFew('shared keys', u2.length, o.threshold)

  // Round 2: the masked input, with pairwise masks only for the clients of U2.
  const gone = [...seeds].filter(([v]) => !held.has(v))
  if (gone.length)
    y = applyMasks(
      y,
      gone.map(([v, seed]) => ({ seed, sub: me < v })),
    )
  await ch.send(A, tag('masked'), ringToBytes(y))

  // Round 3: reveal exactly one secret's share per client of U2: never both for the same client.
  const um = await ch.recv(A, tag('unmask'))
  if (um.length % 2 !== 0) throw badMessage(A, 'unmask list length')
  const u3 = new Set<number>()
  for (let off = 0; off < um.length; off += 2) {
    const w = u16(um, off)
    if (!held.has(w) || u3.has(w)) throw badMessage(A, `unmask entry ${w}`)
    u3.add(w)
  }
  if (u3.size < o.threshold) throw tooFew('masked inputs', u3.size, o.threshold)
  const out: Uint8Array[] = []
  for (const [w, sh] of held) {
    const kind = u3.has(w) ? REVEAL_B : REVEAL_S
    out.push(revealRecord(w, kind, kind === REVEAL_B ? sh.b : sh.s))
  }
  await ch.send(A, tag('reveal'), Buffer.concat(out))
}

/** Runs the aggregator: returns the sum of the surviving clients' vectors. */
export async function secAggAggregate(ch: PartyChannel, o: AggregatorOptions): Promise<AggregateResult> {
  const { clients, idx, tag } = setup(ch, o)
  if (ch.self !== o.aggregator)
    throw new SyndicateError(ERR_SECAGG_PARAMS, `${ch.self} is not the aggregator`)
  const wait = o.roundTimeoutMs ?? 30_000
  const _name = (i: number) => ch.parties[i]

  // Rounds 0 and 1.
  const { keys, u2 } = await gatherKeys(ch, clients, o.threshold, tag, wait, REC_BOX)

  // Round 2: masked inputs, added up as they arrive (the sum over U3 whatever the order).
  const sum: RingVector = new BigUint64Array(o.length)
  const masked = await collect(ch, u2, tag('masked'), wait, (p, m) => {
    if (m.length !== 8 * o.length) throw badMessage(p, `masked input of ${m.length} bytes`)
    ringAccumulate(sum, [{ x: ringView(m) }], sum)
  })
  if (masked.size < o.threshold) throw tooFew('masked inputs', masked.size, o.threshold, missing(u2, masked))
  const u3 = [...masked.keys()]
  const u3List = Buffer.concat(u3.map((p) => u16Bytes(idx(p))))
  await Promise.all(u3.map((p) => ch.send(p, tag('unmask'), u3List)))

  // Round 3: one share per U2 client from each of the first `threshold` survivors to answer, then unmask.
  // Every reveal carries one share per U2 client; the first `threshold` revealers' shares suffice (the others
  // are not waited for), and their Lagrange coefficients serve every reconstruction.
  const reveals = await collect(ch, u3, tag('reveal'), wait, undefined, o.threshold)
  if (reveals.size < o.threshold)
    throw tooFew('unmasking shares', reveals.size, o.threshold, missing(u3, reveals))
  const { secretOf } = reconstruct(ch, reveals, o.threshold, u2, (p) => masked.has(p))

  const masks: Mask[] = u3.map((p) => ({ seed: selfMaskSeed(secretOf(p), o.session), sub: true }))
  for (const p of u2) {
    if (masked.has(p)) continue
    // p dropped after sharing: rebuild its mask key and remove its pairwise masks from the survivors' inputs.
    const w = idx(p)
    const sw = keyPairFromSecret(secretOf(p))
    if (!equal(sw.pub, keys.get(w)!.s)) {
      throw new SyndicateError(
        ERR_SECAGG_BAD_MESSAGE,
        `the shares of ${p}'s mask key do not reconstruct its advertised key; a client sent a wrong share`,
        { party: p },
      )
    }
    for (const q of u3) {
      const v = idx(q)
      masks.push({ seed: maskSeed(sw, keys.get(v)!.s, o.session), sub: v < w })
    }
  }
  return { sum: applyMasks(sum, masks), contributors: u3 }
}

/**
 * The aggregator's rounds 0 and 1: gathers the advertised keys, sends every client the key list, and routes
 * the share boxes (`record` bytes each). Returns the keys and U2, the clients whose boxes arrived.
 */
export async function gatherKeys(
  ch: PartyChannel,
  clients: readonly string[],
  threshold: number,
  tag: (step: string) => string,
  wait: number,
  record: number,
): Promise<{ keys: Map<number, { c: Uint8Array; s: Uint8Array }>; u2: string[] }> {
  const idx = (p: string) => ch.parties.indexOf(p)
  const adv = await collect(ch, clients, tag('adv'), wait)
  const keys = new Map<number, { c: Uint8Array; s: Uint8Array }>()
  for (const [p, m] of adv) {
    if (m.length !== ADV) throw badMessage(p, `advertised keys of ${m.length} bytes`)
    keys.set(idx(p), { c: m.slice(0, KEY), s: m.slice(KEY) })
  }
  if (keys.size < threshold) throw tooFew('advertised keys', keys.size, threshold, missing(clients, adv))
  const keyList = Buffer.concat([...keys].map(([i, k]) => Buffer.concat([u16Bytes(i), k.c, k.s])))
  await Promise.all([...keys.keys()].map((i) => ch.send(ch.parties[i], tag('keys'), keyList)))
  const u1 = [...keys.keys()].map((i) => ch.parties[i])
  const shares = await collect(ch, u1, tag('shares'), wait)
  const routed = routeBoxes(ch, shares, keys.size - 1, record, (v) => keys.has(v))
  if (shares.size < threshold) throw tooFew('shared keys', shares.size, threshold, missing(u1, shares))
  const u2 = [...shares.keys()]
  await Promise.all(u2.map((p) => ch.send(p, tag('inbox'), Buffer.concat(routed.get(idx(p)) ?? []))))
  return { keys, u2 }
}

/**
 * A client's round 0: two fresh key pairs (c for share boxes, s for pairwise masks) sent to the aggregator, and
 * the key list it answers with (u16 client ‖ c key ‖ s key per entry), checked: it must hold our own keys.
 */
export async function advertise(
  ch: PartyChannel,
  aggregator: string,
  tag: (step: string) => string,
  clients: readonly string[],
  threshold: number,
): Promise<{ c: KeyPair; s: KeyPair; keys: Map<number, { c: Uint8Array; s: Uint8Array }> }> {
  const c = newKeyPair()
  const s = newKeyPair()
  await ch.send(aggregator, tag('adv'), Buffer.concat([c.pub, s.pub]))
  const km = await ch.recv(aggregator, tag('keys'))
  const me = ch.parties.indexOf(ch.self)
  if (km.length % REC_KEYS !== 0) throw badMessage(aggregator, 'key list length')
  const keys = new Map<number, { c: Uint8Array; s: Uint8Array }>()
  for (let off = 0; off < km.length; off += REC_KEYS) {
    const i = u16(km, off)
    if (!clients.includes(ch.parties[i] ?? '') || keys.has(i))
      throw badMessage(aggregator, `key list entry ${i}`)
    keys.set(i, { c: km.slice(off + 2, off + 2 + KEY), s: km.slice(off + 2 + KEY, off + REC_KEYS) })
  }
  const own = keys.get(me)
  if (!own || !equal(own.c, c.pub) || !equal(own.s, s.pub))
    throw badMessage(aggregator, 'key list without our keys')
  if (keys.size < threshold) throw tooFew('advertised keys', keys.size, threshold)
  return { c, s, keys }
}

/**
 * Routes share boxes (u16 recipient ‖ sealed share, `count` records of `record` bytes per sender) to their
 * recipients among the senders, each prefixed with its sender.
 */
export function routeBoxes(
  ch: PartyChannel,
  from: Map<string, Uint8Array>,
  count: number,
  record: number,
  known: (v: number) => boolean,
): Map<number, Uint8Array[]> {
  const routed = new Map<number, Uint8Array[]>()
  for (const [p, m] of from) {
    const u = ch.parties.indexOf(p)
    if (m.length !== count * record) throw badMessage(p, `share boxes of ${m.length} bytes`)
    const seen = new Set<number>()
    for (let off = 0; off < m.length; off += record) {
      const v = u16(m, off)
      if (!known(v) || v === u || seen.has(v)) throw badMessage(p, `share box for ${v}`)
      seen.add(v)
      if (!from.has(ch.parties[v])) continue
      routed.set(v, [
        ...(routed.get(v) ?? []),
        Buffer.concat([u16Bytes(u), m.subarray(off + 2, off + record)]),
      ])
    }
  }
  return routed
}

/**
 * The first `threshold` reveals (one share per client of `covered`: of the self mask for the `survived`, of
 * s for the others), checked; `secretOf` rebuilds a client's secret with one set of Lagrange coefficients.
 */
export function reconstruct(
  ch: PartyChannel,
  reveals: Map<string, Uint8Array>,
  threshold: number,
  covered: readonly string[],
  survived: (p: string) => boolean,
): { quorum: [string, Uint8Array][]; secretOf: (p: string) => bigint } {
  const quorum = [...reveals].slice(0, threshold)
  const got = new Map<number, bigint[]>()
  const coveredIdx = new Set(covered.map((p) => ch.parties.indexOf(p)))
  for (const [p, m] of quorum) {
    if (m.length !== covered.length * REC_REVEAL) throw badMessage(p, `reveal of ${m.length} bytes`)
    const seen = new Set<number>()
    for (let off = 0; off < m.length; off += REC_REVEAL) {
      const w = u16(m, off)
      const want = survived(ch.parties[w] ?? '') ? REVEAL_B : REVEAL_S
      if (!coveredIdx.has(w) || m[off + 2] !== want || seen.has(w))
        throw badMessage(p, `reveal entry for ${w}`)
      seen.add(w)
      const y = bytesToField(m.subarray(off + 3, off + REC_REVEAL))
      if (y >= SHAMIR_PRIME) throw badMessage(p, `a share outside the field for ${w}`)
      got.set(w, [...(got.get(w) ?? []), y])
    }
  }
  const coeffs = lagrangeAtZero(quorum.map(([p]) => xOf(ch.parties.indexOf(p))))
  const secretOf = (p: string) => {
    const ys = got.get(ch.parties.indexOf(p))
    if (!ys || ys.length !== quorum.length) throw badMessage(quorum[0][0], `no share for ${p}`)
    return combineWith(coeffs, ys)
  }
  return { quorum, secretOf }
}

/** Bytes of one revealed share: u16 client ‖ kind (REVEAL_B or REVEAL_S) ‖ field element. */
export const REVEAL_RECORD = REC_REVEAL

/** One revealed share, written into `out` at `at` (default: a record of its own); returns `out`. */
export function revealRecord(
  w: number,
  kind: number,
  y: bigint,
  out: Uint8Array = new Uint8Array(REC_REVEAL),
  at = 0,
): Uint8Array {
  out[at] = w & 0xff
  out[at + 1] = w >>> 8
  out[at + 2] = kind
  out.set(fieldToBytes(y), at + 3)
  return out
}

/**
 * Messages under `tag` from `from`, waiting until all arrived (or `enough` of them) or `timeoutMs` passed;
 * parties missing then count as dropped (a late message is taken off the channel and ignored). `onMessage`
 * sees each message that arrives in time, as it arrives; what it throws fails the collection.
 */
export async function collect(
  ch: PartyChannel,
  from: readonly string[],
  tag: string,
  timeoutMs: number,
  onMessage?: (from: string, m: Uint8Array) => void,
  enough = from.length,
): Promise<Map<string, Uint8Array>> {
  const got = new Map<string, Uint8Array>()
  let open = true
  let timer: NodeJS.Timeout | undefined
  let done: () => void = () => undefined
  const timeout = new Promise<void>((r) => {
    timer = setTimeout(r, timeoutMs)
    done = r
  })
  const all = Promise.all(
    from.map((p) =>
      ch.recv(p, tag).then(
        (m) => {
          if (!open) return
          onMessage?.(p, m)
          got.set(p, m)
          if (got.size >= enough) done()
        },
        () => undefined,
      ),
    ),
  )
  try {
    await Promise.race([all, timeout])
  } finally {
    open = false
    clearTimeout(timer)
  }
  // Keep the agreed order (channel order), not arrival order.
  return new Map(from.filter((p) => got.has(p)).map((p) => [p, got.get(p)!]))
}

export function missing(expected: readonly string[], got: Map<string, unknown>): string[] {
  return expected.filter((p) => !got.has(p))
}

export function tooFew(
  round: string,
  got: number,
  threshold: number,
  dropped: string[] = [],
): SyndicateError {
  return new SyndicateError(
    ERR_SECAGG_TOO_FEW,
    `secure aggregation: only ${got} clients completed "${round}", the threshold is ${threshold}${dropped.length ? ` (dropped: ${dropped.join(', ')})` : ''}; rerun with the clients that are online`,
    { round, got, threshold, dropped },
  )
}

export function u16(b: Uint8Array, off: number): number {
  return b[off] | (b[off + 1] << 8)
}

export function u16Bytes(v: number): Uint8Array {
  return Uint8Array.of(v & 0xff, v >>> 8)
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0
}
