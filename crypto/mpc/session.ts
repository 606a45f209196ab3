/**
 * The online engine: additive secret sharing of fixed-point matrices among n >= 2 parties over a
 * PartyChannel, Beaver-triple multiplication and matrix multiplication, truncation and reveal.
 *
 * Every party runs the same program on its `MpcSession`; a party's share of a value x is a ring vector x_i with
 * Σ x_i = x mod 2^64. Linear operations are local. Every opening (masked values in a multiplication, a
 * reveal, a truncation) is one round in which each party sends one message to each other party, however many
 * values are opened together; `rounds` counts them.
 *
 * Randomness: pairwise PRG seeds are exchanged at setup, so sharing an input costs no traffic (each other
 * party derives its share from the seed it shares with the owner; the owner keeps the difference). Beaver
 * triples and truncation pairs come from a CorrelatedSource (dealer or homomorphic, offline).
 */
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { decodeFixed, encodeFixed, encodeFixedScalar } from '../fixed.ts'
import { freshSeed, Prg, SEED_BYTES } from './prg.ts'
import {
  type Ring,
  ringAdd,
  ringAnd,
  ringBits,
  ringConcat,
  ringConst,
  ringFromInts,
  ringMatmul,
  ringMul,
  ringNeg,
  ringNegSarNeg,
  ringSar,
  ringScale,
  ringShr,
  ringSub,
  ringTranspose,
  ringXor,
} from './ring.ts'
import type { CorrelatedSource } from './source.ts'
import { ERR_MPC_BAD_MESSAGE, ringFromBytes, ringToBytes } from './wire.ts'

/** This party's share of a secret rows×cols matrix (row-major; a vector is a 1-column or 1-row matrix). */
export interface SharedMatrix {
  readonly rows: number
  readonly cols: number
  readonly share: Ring
}

export type Truncation = 'local' | 'exact'

export interface SessionOptions {
  source: CorrelatedSource
  /** Fractional bits of the fixed-point encoding (default 16). */
  fracBits?: number
  /**
   * 'local' (two parties only; SecureML: no communication, fails with probability <= 2^(l+1-64) for |x| < 2^l)
   * or 'exact' (any n; one round and a truncation pair, error <= 1 ulp for |x| < 2^62). Default: 'local' for
   * two parties, 'exact' otherwise.
   */
  truncation?: Truncation
  /** The computing parties; default every party of the channel (an external dealer is left out here). */
  parties?: readonly string[]
  /** Tag namespace, unique per job. */
  tag?: string
}

export const ERR_MPC_SHAPE = 'ERR_MPC_SHAPE'
export const ERR_MPC_PARTIES = 'ERR_MPC_PARTIES'

const TRUNC_BIAS_BITS = 62

export class MpcSession {
  readonly ch: PartyChannel
  readonly parties: readonly string[]
  readonly self: string
  /** Position of this party in `parties`; party 0 adds public constants. */
  readonly index: number
  readonly fracBits: number
  readonly source: CorrelatedSource
  readonly truncation: Truncation
  /** Communication rounds so far (each opening is one). */
  rounds = 0
  private readonly tag: string
  private readonly pairs: Map<string, Prg>
  private seq = 0

  private constructor(
    ch: PartyChannel,
    opts: SessionOptions,
    parties: readonly string[],
    pairs: Map<string, Prg>,
  ) {
    this.ch = ch
    this.parties = parties
    this.self = ch.self
    this.index = parties.indexOf(ch.self)
    this.fracBits = opts.fracBits ?? 16
    this.source = opts.source
    this.truncation = opts.truncation ?? (parties.length === 2 ? 'local' : 'exact')
    this.tag = opts.tag ?? 'mpc'
    this.pairs = pairs
  }

  /** Setup: exchanges a PRG seed with every other party (the lower-placed party of a pair picks it). */
  static async create(ch: PartyChannel, opts: SessionOptions): Promise<MpcSession> {
    const parties = opts.parties ?? ch.parties
    const tag = opts.tag ?? 'mpc'
    if (parties.length < 2 || !parties.includes(ch.self) || parties.some((p) => !ch.parties.includes(p))) {
      throw new SyndicateError(
        ERR_MPC_PARTIES,
        `an MPC session needs >= 2 channel parties including ${ch.self}`,
      )
    }
    if (opts.truncation === 'local' && parties.length !== 2) {
      throw new SyndicateError(ERR_MPC_PARTIES, `local truncation works for two parties only; use 'exact'`)
    }
    const me = parties.indexOf(ch.self)
    const pairs = new Map<string, Prg>()
    const sends: Promise<void>[] = []
    for (const [j, p] of parties.entries()) {
      if (j <= me) continue
      const seed = freshSeed()
      pairs.set(p, new Prg(seed))
      sends.push(ch.send(p, `${tag}/pairseed`, seed))
    }
    await Promise.all(sends)
    for (const [j, p] of parties.entries()) {
      if (j >= me) continue
      const seed = await ch.recv(p, `${tag}/pairseed`)
      if (seed.byteLength !== SEED_BYTES) {
        throw new SyndicateError(ERR_MPC_BAD_MESSAGE, `party ${p} sent a malformed pairwise seed`, {
          from: p,
        })
      }
      pairs.set(p, new Prg(seed))
    }
    return new MpcSession(ch, opts, parties, pairs)
  }

  // --- sharing and opening -----------------------------------------------------------------------------------

  /**
   * Shares a rows×cols ring matrix held by `owner` (who passes `data`; the others pass nothing). No traffic:
   * every other party's share is drawn from the PRG it shares with the owner.
   */
  shareRing(owner: string, rows: number, cols: number, data?: Ring): SharedMatrix {
    const n = checkShape(rows, cols)
    if (owner !== this.self) {
      const prg = this.pairs.get(owner)
      if (!prg) throw new SyndicateError(ERR_MPC_PARTIES, `${owner} is not a party of this session`)
      return { rows, cols, share: prg.ring(n) }
    }
    if (!data || data.length !== n) {
      throw new SyndicateError(ERR_MPC_SHAPE, `the owner must pass ${rows}x${cols} = ${n} values to share`)
    }
    let share = data
    for (const p of this.parties) if (p !== this.self) share = ringSub(share, this.pairs.get(p)!.ring(n))
    return { rows, cols, share }
  }

  /**
   * This party's share of a rows×cols ring matrix that `owner`, an input party outside the session, shares in
   * with `sendInput` under the same `tag`: every computing party but the last derives its share from a seed
   * the owner sent it, the last receives the remainder (the only message of size rows·cols).
   */
  async receiveInput(owner: string, rows: number, cols: number, tag: string): Promise<SharedMatrix> {
    const n = checkShape(rows, cols)
    if (this.parties.includes(owner)) {
      throw new SyndicateError(ERR_MPC_PARTIES, `${owner} computes in this session: share with shareRing`)
    }
    const payload = await this.ch.recv(owner, tag)
    if (this.index < this.parties.length - 1) {
      if (payload.byteLength !== SEED_BYTES) {
        throw new SyndicateError(ERR_MPC_BAD_MESSAGE, `input party ${owner} sent a malformed seed`, {
          from: owner,
        })
      }
      return { rows, cols, share: new Prg(payload).ring(n) }
    }
    return { rows, cols, share: ringFromBytes(payload, n, owner, tag) }
  }

  /** Opens x to `outsider`, a party outside the session that runs `receiveOutput` with the same `tag`. */
  revealTo(x: SharedMatrix, outsider: string, tag: string): Promise<void> {
    if (this.parties.includes(outsider)) {
      throw new SyndicateError(ERR_MPC_PARTIES, `${outsider} computes in this session: use reveal`)
    }
    return this.ch.send(outsider, tag, ringToBytes(x.share))
  }

  /** Shares reals (fixed-point encoded) held by `owner`. */
  share(owner: string, rows: number, cols: number, values?: Float64Array | readonly number[]): SharedMatrix {
    return this.shareRing(owner, rows, cols, values ? encodeFixed(values, this.fracBits) : undefined)
  }

  /** A sharing of public values: party 0 holds the encoding, the others zero. */
  constant(rows: number, cols: number, values: Float64Array | readonly number[]): SharedMatrix {
    const n = checkShape(rows, cols)
    if (values.length !== n) throw new SyndicateError(ERR_MPC_SHAPE, `expected ${n} public values`)
    return {
      rows,
      cols,
      share: this.index === 0 ? encodeFixed(values, this.fracBits) : new BigUint64Array(n),
    }
  }

  /** Opens several shared vectors to every party in one round. */
  open(parts: readonly Ring[]): Promise<Ring[]> {
    return this.openWith(parts, ringAdd)
  }

  /** Opens XOR-shared (boolean) vectors in one round. */
  openXor(parts: readonly Ring[]): Promise<Ring[]> {
    return this.openWith(parts, ringXor)
  }

  private async openWith(parts: readonly Ring[], combine: (a: Ring, b: Ring) => Ring): Promise<Ring[]> {
    const tag = `${this.tag}/o${this.seq++}`
    this.rounds++
    const mine = ringConcat(...parts)
    const others = this.parties.filter((p) => p !== this.self)
    await Promise.all(others.map((p) => this.ch.send(p, tag, ringToBytes(mine))))
    let sum = mine
    for (const p of others) sum = combine(sum, ringFromBytes(await this.ch.recv(p, tag), mine.length, p, tag))
    const out: Ring[] = []
    let at = 0
    for (const part of parts) {
      out.push(sum.subarray(at, at + part.length))
      at += part.length
    }
    return out
  }

  /** Reveals x's ring value to every party, or only to `to` (the others get undefined). One round. */
  async revealRing(x: SharedMatrix, to?: string): Promise<Ring | undefined> {
    if (to === undefined) return (await this.open([x.share]))[0]
    if (!this.parties.includes(to))
      throw new SyndicateError(ERR_MPC_PARTIES, `${to} is not a party of this session`)
    const tag = `${this.tag}/o${this.seq++}`
    this.rounds++
    if (this.self !== to) {
      await this.ch.send(to, tag, ringToBytes(x.share))
      return undefined
    }
    let sum = x.share
    for (const p of this.parties) {
      if (p !== this.self) sum = ringAdd(sum, ringFromBytes(await this.ch.recv(p, tag), sum.length, p, tag))
    }
    return sum
  }

  /** Reveals and decodes x to every party, or only to `to`. */
  async reveal(x: SharedMatrix, to?: string): Promise<Float64Array | undefined> {
    const r = await this.revealRing(x, to)
    return r && decodeFixed(r, this.fracBits)
  }

  // --- local operations ----------------------------------------------------------------------------------------

  add(x: SharedMatrix, y: SharedMatrix): SharedMatrix {
    sameShape(x, y)
    return { rows: x.rows, cols: x.cols, share: ringAdd(x.share, y.share) }
  }

  sub(x: SharedMatrix, y: SharedMatrix): SharedMatrix {
    sameShape(x, y)
    return { rows: x.rows, cols: x.cols, share: ringSub(x.share, y.share) }
  }

  neg(x: SharedMatrix): SharedMatrix {
    return { ...x, share: ringNeg(x.share) }
  }

  /** x + c for public reals c (one per element, or one for all). */
  addPublic(x: SharedMatrix, c: number | Float64Array | readonly number[]): SharedMatrix {
    if (this.index !== 0) return x
    const n = x.share.length
    const enc =
      typeof c === 'number'
        ? ringConst(n, encodeFixedScalar(c, this.fracBits))
        : encodeFixed(c, this.fracBits)
    if (enc.length !== n) throw new SyndicateError(ERR_MPC_SHAPE, `expected ${n} public values`)
    return { ...x, share: ringAdd(x.share, enc) }
  }

  /** x · k for a public integer k (exact, no truncation). */
  scaleInt(x: SharedMatrix, k: bigint): SharedMatrix {
    return { ...x, share: ringScale(x.share, k) }
  }

  /** x · c for a public real c (one truncation). */
  async mulPublic(x: SharedMatrix, c: number): Promise<SharedMatrix> {
    return this.truncate(this.scaleInt(x, BigInt.asIntN(64, encodeFixedScalar(c, this.fracBits))))
  }

  transpose(x: SharedMatrix): SharedMatrix {
    return { rows: x.cols, cols: x.rows, share: ringTranspose(x.share, x.rows, x.cols) }
  }

  // --- multiplication ----------------------------------------------------------------------------------------

  /** Elementwise product of ring shares (no truncation): one Beaver triple, one round. */
  async mulRing(x: Ring, y: Ring): Promise<Ring> {
    if (x.length !== y.length)
      throw new SyndicateError(ERR_MPC_SHAPE, `cannot multiply ${x.length} by ${y.length} elements`)
    const t = await this.source.mulTriple(x.length)
    const [e, f] = await this.open([ringSub(x, t.a), ringSub(y, t.b)])
    // z = c + e∘b + f∘a (+ e∘f once, at party 0): Σ z = (a+e)(b+f) = x∘y
    const z = ringAdd(t.c, ringAdd(ringMul(e, t.b), ringMul(f, t.a)))
    return this.index === 0 ? ringAdd(z, ringMul(e, f)) : z
  }

  /** Bitwise AND of XOR-shared 64-bit words: one boolean triple, one round. */
  async andBool(x: Ring, y: Ring): Promise<Ring> {
    if (x.length !== y.length)
      throw new SyndicateError(ERR_MPC_SHAPE, `cannot AND ${x.length} with ${y.length} words`)
    const t = await this.source.andTriple(x.length)
    const [e, f] = await this.openXor([ringXor(x, t.a), ringXor(y, t.b)])
    const z = ringXor(t.c, ringXor(ringAnd(e, t.b), ringAnd(f, t.a)))
    return this.index === 0 ? ringXor(z, ringAnd(e, f)) : z
  }

  /** Matrix product of ring shares x (m×k) · y (k×n), no truncation: one matrix triple, one round. */
  async matmulRing(x: Ring, y: Ring, m: number, k: number, n: number): Promise<Ring> {
    if (x.length !== m * k || y.length !== k * n) {
      throw new SyndicateError(ERR_MPC_SHAPE, `matmul operands are not ${m}x${k} and ${k}x${n}`)
    }
    const t = await this.source.matmulTriple(m, k, n)
    const [e, f] = await this.open([ringSub(x, t.a), ringSub(y, t.b)])
    // Z = C + E·B + A·F (+ E·F at party 0), computed as E·(B+F) + A·F there: two local products per party.
    const eb = ringMatmul(e, this.index === 0 ? ringAdd(t.b, f) : t.b, m, k, n)
    return ringAdd(t.c, ringAdd(eb, ringMatmul(t.a, f, m, k, n)))
  }

  /**
   * X · Y where `owner` holds X (rows×y.rows reals) in the clear and Y is shared, with an `OwnedTriple` from
   * `HeTripleSource.ownedTriple` for X: the other parties send their share of Y − B to the owner only (one
   * round, k×n elements), the owner adds X·(Y − B) to its share of X·B. X is never shared or opened. Truncated.
   */
  async matmulOwned(
    owner: string,
    x: Float64Array | readonly number[] | undefined,
    rows: number,
    y: SharedMatrix,
    corr: { b: Ring; c: Ring },
  ): Promise<SharedMatrix> {
    if (this.self === owner && (!x || x.length !== rows * y.rows))
      throw new SyndicateError(ERR_MPC_SHAPE, `the owner must pass ${rows}x${y.rows} values`)
    const xr = this.self === owner ? encodeFixed(x!, this.fracBits) : undefined
    const z = await this.matmulOwnedRing(owner, xr, rows, y.share, y.rows, y.cols, corr)
    return this.truncate({ rows, cols: y.cols, share: z })
  }

  /**
   * `matmulOwned` on ring values, not truncated: X (rows×k, the owner's ring matrix) · shares of Y (k×n). Also
   * takes the correlations of `FixedMatrix.forward` / `backward` (he-fixed.ts).
   */
  async matmulOwnedRing(
    owner: string,
    x: Ring | undefined,
    rows: number,
    y: Ring,
    k: number,
    n: number,
    corr: { b: Ring; c: Ring },
  ): Promise<Ring> {
    if (y.length !== k * n || corr.b.length !== k * n || corr.c.length !== rows * n) {
      throw new SyndicateError(ERR_MPC_SHAPE, `the owned triple does not fit ${rows}x${k} · ${k}x${n}`)
    }
    const f = ringSub(y, corr.b)
    const tag = `${this.tag}/o${this.seq++}`
    this.rounds++
    if (this.self !== owner) {
      await this.ch.send(owner, tag, ringToBytes(f))
      return corr.c
    }
    if (!x || x.length !== rows * k)
      throw new SyndicateError(ERR_MPC_SHAPE, `the owner must pass ${rows}x${k} values`)
    let F = f
    for (const p of this.parties)
      if (p !== this.self) F = ringAdd(F, ringFromBytes(await this.ch.recv(p, tag), k * n, p, tag))
    return ringAdd(corr.c, ringMatmul(x, F, rows, k, n))
  }

  /** Fixed-point elementwise product (same shapes), truncated. */
  async mul(x: SharedMatrix, y: SharedMatrix): Promise<SharedMatrix> {
    sameShape(x, y)
    return this.truncate({ rows: x.rows, cols: x.cols, share: await this.mulRing(x.share, y.share) })
  }

  /** Fixed-point matrix product, truncated. */
  async matmul(x: SharedMatrix, y: SharedMatrix): Promise<SharedMatrix> {
    if (x.cols !== y.rows) {
      throw new SyndicateError(ERR_MPC_SHAPE, `cannot multiply ${x.rows}x${x.cols} by ${y.rows}x${y.cols}`)
    }
    const z = await this.matmulRing(x.share, y.share, x.rows, x.cols, y.cols)
    return this.truncate({ rows: x.rows, cols: y.cols, share: z })
  }

  /** Divides by 2^bits (default: the fractional bits, after a fixed-point product). */
  async truncate(x: SharedMatrix, bits = this.fracBits): Promise<SharedMatrix> {
    return { ...x, share: await this.truncateRing(x.share, bits) }
  }

  async truncateRing(x: Ring, bits: number): Promise<Ring> {
    if (!Number.isInteger(bits) || bits < 0 || bits >= TRUNC_BIAS_BITS) {
      throw new SyndicateError(ERR_MPC_SHAPE, `cannot truncate by ${bits} bits`)
    }
    if (bits === 0) return x
    if (this.truncation === 'local') return this.index === 0 ? ringSar(x, bits) : ringNegSarNeg(x, bits)
    // Exact: open c = x + 2^62 + r; with x + 2^62 in [0, 2^63) it wrapped iff msb(r) = 1 and msb(c) = 0, so
    // (x + 2^62) >> bits = (c >> bits) - (r >> bits) + wrap · 2^(64-bits); the result is floor(x / 2^bits) or 1 ulp more (carry of the low bits).
    const n = x.length
    const pair = await this.source.truncPair(n, bits)
    const biased = this.index === 0 ? ringAdd(x, ringConst(n, 1n << BigInt(TRUNC_BIAS_BITS))) : x
    const [c] = await this.open([ringAdd(biased, pair.r)])
    const notTop = ringFromInts(ringBits(c, 63).map((b) => 1 - b))
    const wrap = ringScale(ringMul(pair.msb, notTop), 1n << BigInt(64 - bits))
    let z = ringAdd(ringNeg(pair.shifted), wrap)
    if (this.index === 0) {
      z = ringAdd(z, ringSub(ringShr(c, bits), ringConst(n, 1n << BigInt(TRUNC_BIAS_BITS - bits))))
    }
    return z
  }
}

/**
 * An input party's side of `MpcSession.receiveInput`: splits `data` among the computing `parties` (a seed to
 * each but the last, the remainder to the last), so a data holder can take part without computing.
 */
export async function sendInput(
  ch: PartyChannel,
  parties: readonly string[],
  tag: string,
  data: Ring,
): Promise<void> {
  let rest = data
  const sends: Promise<void>[] = []
  for (const p of parties.slice(0, -1)) {
    const seed = freshSeed()
    rest = ringSub(rest, new Prg(seed).ring(data.length))
    sends.push(ch.send(p, tag, seed))
  }
  sends.push(ch.send(parties[parties.length - 1], tag, ringToBytes(rest)))
  await Promise.all(sends)
}

/** An outsider's side of `MpcSession.revealTo`: the sum of every computing party's share (n values). */
export async function receiveOutput(
  ch: PartyChannel,
  parties: readonly string[],
  tag: string,
  n: number,
): Promise<Ring> {
  let sum: Ring = new BigUint64Array(n)
  for (const p of parties) sum = ringAdd(sum, ringFromBytes(await ch.recv(p, tag), n, p, tag))
  return sum
}

function checkShape(rows: number, cols: number): number {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new SyndicateError(ERR_MPC_SHAPE, `invalid matrix shape ${rows}x${cols}`)
  }
  return rows * cols
}

function sameShape(x: SharedMatrix, y: SharedMatrix): void {
  if (x.rows !== y.rows || x.cols !== y.cols) {
    throw new SyndicateError(ERR_MPC_SHAPE, `shapes differ: ${x.rows}x${x.cols} vs ${y.rows}x${y.cols}`)
  }
}
