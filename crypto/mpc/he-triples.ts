/**
 * Dealer-free correlated randomness for two parties with BFV homomorphic encryption (node-seal): nobody
 * outside the two computing parties is trusted.
 *
 * Each party samples its own shares A_i, B_i and needs shares of the cross terms A_0·B_1 and A_1·B_0. For
 * A_0·B_1, party 1 encrypts B_1 under its own secret key and sends it; party 0 multiplies by A_0 as plaintexts
 * (slotwise products accumulated per output ciphertext, see he-layout.ts: no rotation is needed), adds a random
 * mask R and returns the ciphertexts; party 1 decrypts P + R and party 0 keeps -R. The other cross term runs
 * the same way with the roles swapped, at the same time. Adding the slot shares gives shares of the product.
 *
 * Z(2^64) is not a BFV plaintext space (SEAL's plaintext modulus is at most 60 bits and must be prime for
 * slots), so each slot's sum P of products (< 2^138) is computed exactly as an integer: three batching primes
 * t_1 t_2 t_3 (T ≈ 2^180) in three contexts, recombined by the CRT (Garner). R is uniform in Z_T (its residues
 * are drawn independently), so the decrypting party's view P + R mod T is uniform and independent of P. Both
 * parties reduce their integers (P + R mod T, and -R) mod 2^64; that is exact unless P + R wraps mod T, which
 * happens with probability P / T < 2^-42 per slot. CKKS was not used: it is approximate, and triples must be
 * exact.
 *
 * A party only ever decrypts its own ciphertexts; the evaluator needs no keys. The reply is switched down two
 * modulus levels before masking so that its noise reveals (almost) nothing about the multiplier's plaintext
 * (see COEFF_BITS and docs/mpc.md for how far that goes; it is not full noise flooding).
 *
 * Both parties must also run the same sequence of requests (as for every source).
 */
import type {
  BatchEncoder,
  Ciphertext,
  Decryptor,
  Encryptor,
  Evaluator,
  MainModule,
  SEALContext,
} from 'node-seal'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { loadSeal, sealMessage } from '../he/seal.ts'
import {
  blockSlots,
  chunkId,
  encryptedChunk,
  foldUnit,
  HE_POLY_DEGREE,
  type MatmulLayout,
  matmulLayout,
  plainTerm,
  slotRanges,
} from './he-layout.ts'
import { privatePrg } from './prg.ts'
import {
  type Ring,
  ringAdd,
  ringConcat,
  ringConst,
  ringMatmul,
  ringMul,
  ringRem,
  ringScale,
  ringSub,
} from './ring.ts'
import {
  type Correlation,
  type CorrelationRequest,
  ERR_MPC_UNSUPPORTED,
  requestKey,
  StockedSource,
  type Triple,
} from './source.ts'
import { ERR_MPC_BAD_MESSAGE, frame, unframe } from './wire.ts'

export { HE_POLY_DEGREE }

/**
 * Ciphertext modulus: four data primes (162 bits) and a special prime, 216 bits in all (128-bit security at
 * N = 8192). Products are computed at the top level; the reply is switched down two levels to 76 bits, which
 * scales the computation's noise (the part that depends on the multiplier's plaintext) to ~2^-14 while the
 * switch adds rounding noise of ~2^7: what the decrypting peer can measure is then dominated by rounding, not
 * by the multiplier's input (circuit privacy by modulus switching, short of full noise flooding).
 */
const COEFF_BITS = [38, 38, 43, 43, 54]
/** Levels the reply is switched down before masking and sending. */
const REPLY_SWITCHES = 2
const PLAIN_BITS = [60, 60, 60]

interface PrimeContext {
  t: bigint
  ctx: SEALContext
  encoder: BatchEncoder
  encryptor: Encryptor
  decryptor: Decryptor
  evaluator: Evaluator
}

/** Shares of a random B (k×n) and of X·B for a matrix X one party holds in the clear. */
export interface OwnedTriple {
  b: Ring
  c: Ring
}

/**
 * A unit of work: one reply ciphertext of `slots` slots, the sum of its terms' products; a term multiplies the
 * peer's encrypted chunk `chunk` by my slot values `plain(prime)` (reduced mod that prime).
 */
interface Unit {
  slots: number
  terms: { chunk: number; plain: (prime: number) => BigUint64Array }[]
}

export class HeTripleSource extends StockedSource {
  readonly kind = 'he' as const
  /** Boolean correlations are not generated dealer-free yet; comparison falls back to arithmetic bits. */
  readonly boolean = false
  private readonly ch: PartyChannel
  private readonly peer: string
  private readonly lead: boolean
  private readonly seal: MainModule
  private readonly primes: PrimeContext[]
  private readonly garner: Garner
  private readonly prg = privatePrg()
  private readonly tag: string
  private counter = 0
  private busyMs = 0

  private constructor(
    ch: PartyChannel,
    parties: readonly string[],
    seal: MainModule,
    primes: PrimeContext[],
    tag: string,
  ) {
    super()
    this.ch = ch
    this.peer = parties.find((p) => p !== ch.self)!
    this.lead = parties[0] === ch.self
    this.seal = seal
    this.primes = primes
    this.tag = tag
    this.garner = garnerConstants(primes.map((p) => p.t))
  }

  /** Sets up BFV keys for this party (no traffic: only each party's own key is ever used to decrypt). */
  static async create(
    ch: PartyChannel,
    opts: { parties?: readonly string[]; tag?: string } = {},
  ): Promise<HeTripleSource> {
    const parties = opts.parties ?? ch.parties
    if (parties.length !== 2 || !parties.includes(ch.self)) {
      throw new SyndicateError(
        ERR_MPC_UNSUPPORTED,
        `dealer-free triples are implemented for exactly two parties (got ${parties.length}); use a dealer for more`,
      )
    }
    const { seal } = await loadSeal()
    const plain = seal.PlainModulus.BatchingVector(HE_POLY_DEGREE, Int32Array.from(PLAIN_BITS))
    const primes: PrimeContext[] = []
    try {
      for (let i = 0; i < PLAIN_BITS.length; i++) {
        const parms = new seal.EncryptionParameters(seal.SchemeType.bfv)
        parms.setPolyModulusDegree(HE_POLY_DEGREE)
        const coeff = seal.CoeffModulus.Create(HE_POLY_DEGREE, Int32Array.from(COEFF_BITS))
        parms.setCoeffModulus(coeff)
        const t = plain.get(i)!
        parms.setPlainModulus(t)
        const ctx = new seal.SEALContext(parms, true, seal.SecLevelType.tc128)
        const keygen = new seal.KeyGenerator(ctx)
        const sk = keygen.secretKey()
        const pk = keygen.createPublicKey()
        primes.push({
          t: t.value(),
          ctx,
          encoder: new seal.BatchEncoder(ctx),
          encryptor: new seal.Encryptor(ctx, pk, sk),
          decryptor: new seal.Decryptor(ctx, sk),
          evaluator: new seal.Evaluator(ctx),
        })
        for (const o of [parms, coeff, t, keygen, sk, pk]) o.delete()
      }
    } finally {
      plain.delete()
    }
    return new HeTripleSource(ch, parties, seal, primes, opts.tag ?? 'mpc/he')
  }

  /**
   * Seconds this party spent computing (encrypting, multiplying, decrypting) rather than waiting for its peer:
   * with the parties on separate machines, the offline wall time approaches the larger of the two.
   */
  busySeconds(): number {
    return this.busyMs / 1000
  }

  /** Releases the SEAL objects (keys, contexts). */
  dispose(): void {
    for (const p of this.primes) {
      for (const o of [p.encoder, p.encryptor, p.decryptor, p.evaluator, p.ctx]) o.delete()
    }
    this.primes.length = 0
  }

  protected async generate(req: CorrelationRequest): Promise<Correlation> {
    const id = `${this.tag}/${this.counter++}`
    switch (req.kind) {
      case 'matmul':
        return this.matmulTriple_(id, req.m, req.k, req.n)
      case 'mul':
        return this.mulTriple_(id, req.n)
      case 'bits':
        return this.bits_(id, req.n)
      case 'trunc':
      case 'and':
      case 'edabit':
        throw new SyndicateError(
          ERR_MPC_UNSUPPORTED,
          `${requestKey(req)}: the dealer-free source does not generate this correlation (use 'local' truncation; comparison uses random bits)`,
        )
    }
  }

  private async matmulTriple_(id: string, m: number, k: number, n: number): Promise<Triple> {
    const a = this.prg.ring(m * k)
    const b = this.prg.ring(k * n)
    const L = matmulLayout(m, k, n)
    // My B encrypted for the peer's A; the peer's B encrypted for my A; both directions at once.
    const aMod = this.primes.map((p) => ringRem(a, p.t))
    const [asMultiplier, asDecryptor] = await this.cross(
      id,
      encryptedChunks(L, b),
      matmulUnits(L, aMod),
      L.units.map((u) => blockSlots(L, u.jb)),
    )
    const c = ringMatmul(a, b, m, k, n)
    for (const [i, u] of L.units.entries()) {
      foldUnit(L, u, asMultiplier[i], c)
      foldUnit(L, u, asDecryptor[i], c)
    }
    return { a, b, c }
  }

  /**
   * A correlation for X·Y where `owner` holds X (m×k) in the clear (e.g. its own feature block) and Y (k×n) is
   * shared: shares of a random B and of X·B. Only the peer's B needs homomorphic work (one direction, half a
   * triple's cost) and X is never masked or opened. The owner passes `x`, the other party passes nothing.
   * Use it with `MpcSession.matmulOwned`. It depends on X, so it is prepared by calling it, not by a plan.
   */
  async ownedTriple(
    owner: string,
    x: Ring | undefined,
    m: number,
    k: number,
    n: number,
  ): Promise<OwnedTriple> {
    const mine = owner === this.ch.self
    if (owner !== this.peer && !mine)
      throw new SyndicateError(ERR_MPC_UNSUPPORTED, `${owner} is not a party of this source`)
    if (mine && x?.length !== m * k)
      throw new SyndicateError('ERR_MPC_SHAPE', `the owner must pass its ${m}x${k} matrix`)
    const id = `${this.tag}/${this.counter++}`
    const b = this.prg.ring(k * n)
    const L = matmulLayout(m, k, n)
    const c = new BigUint64Array(m * n)
    if (!mine) {
      const chunks = encryptedChunks(L, b)
      const [, products] = await this.cross(
        id,
        chunks,
        [],
        L.units.map((u) => blockSlots(L, u.jb)),
      )
      for (const [i, u] of L.units.entries()) {
        // the owner multiplied by X + 1 (below): remove this party's own B from each slot
        let v = products[i]
        for (let s = u.s0; s < u.s1; s++) v = ringSub(v, chunks[chunkId(L, s, u.jb)])
        foldUnit(L, u, v, c)
      }
      return { b, c }
    }
    // X + 1 slot by slot, so that a block of zeros (sparse data) never makes a zero plaintext, whose product
    // SEAL refuses (a "transparent" ciphertext) and which would tell the peer the block is zero
    const xMod = this.primes.map((p) => ringRem(ringAdd(ringRem(x!, p.t), ringConst(x!.length, 1n)), p.t))
    const [masks] = await this.cross(id, [], matmulUnits(L, xMod), [])
    const own = ringMatmul(x!, b, m, k, n)
    for (const [i, u] of L.units.entries()) foldUnit(L, u, masks[i], own)
    return { b, c: own }
  }

  private async mulTriple_(id: string, n: number): Promise<Triple> {
    const a = this.prg.ring(n)
    const b = this.prg.ring(n)
    const ranges = slotRanges(n)
    const [x, y] = await this.cross(
      id,
      ranges.map(([s, e]) => b.slice(s, e)),
      this.plainUnits(a, ranges),
      ranges.map(([s, e]) => e - s),
    )
    return { a, b, c: ringAdd(ringMul(a, b), ringAdd(ringConcat(...x), ringConcat(...y))) }
  }

  /** Shares of bits u0 ⊕ u1 = u0 + u1 - 2·u0·u1 where each party picks its u_i; one direction only. */
  private async bits_(id: string, n: number): Promise<Ring> {
    const u = this.prg.bits(n)
    const ranges = slotRanges(n)
    const lengths = ranges.map(([s, e]) => e - s)
    const [x, y] = this.lead
      ? await this.cross(id, [], this.plainUnits(u, ranges), [])
      : await this.cross(
          id,
          ranges.map(([s, e]) => u.slice(s, e)),
          [],
          lengths,
        )
    const prod = ringConcat(...x, ...y)
    return ringSub(u, ringScale(prod, 2n))
  }

  /** Units for slotwise products of vectors (one ciphertext per range, chunk i for range i). */
  private plainUnits(v: Ring, ranges: [number, number][]): Unit[] {
    const mod = this.primes.map((p) => ringRem(v, p.t))
    return ranges.map(([s, e], chunk) => ({
      slots: e - s,
      terms: [{ chunk, plain: (j: number) => mod[j].slice(s, e) }],
    }))
  }

  /**
   * One exchange in both directions: encrypts `mine` (chunks of my vector) for the peer; multiplies the peer's
   * encrypted chunks by my `units`; returns my slot shares as multiplier (one Ring per unit, -R) and as
   * decryptor (one per peer unit of the given `peerLengths`, x·y + R mod 2^64).
   */
  private async cross(
    id: string,
    mine: Ring[],
    units: Unit[],
    peerLengths: number[],
  ): Promise<[Ring[], Ring[]]> {
    let t = performance.now()
    const encrypted = frame(this.encryptChunks(mine))
    this.busyMs += performance.now() - t
    await this.ch.send(this.peer, `${id}/enc`, encrypted)
    const peerChunks = unframe(await this.ch.recv(this.peer, `${id}/enc`), this.peer, id, badMessage)
    t = performance.now()
    const [reply, myShares] = this.multiply(peerChunks, units, id)
    const replyBytes = frame(reply)
    this.busyMs += performance.now() - t
    await this.ch.send(this.peer, `${id}/mul`, replyBytes)
    const theirs = unframe(await this.ch.recv(this.peer, `${id}/mul`), this.peer, id, badMessage)
    t = performance.now()
    const products = this.decryptProducts(theirs, peerLengths, id)
    this.busyMs += performance.now() - t
    return [myShares, products]
  }

  private encryptChunks(chunks: Ring[]): Uint8Array[] {
    const out: Uint8Array[] = []
    const pt = new this.seal.Plaintext()
    try {
      for (const chunk of chunks) {
        for (const p of this.primes) {
          p.encoder.encode(ringRem(chunk, p.t), pt)
          const ser = p.encryptor.encryptSymmetricSerializable(pt)
          out.push(ser.saveToArray(this.seal.ComprModeType.none) as Uint8Array)
          ser.delete()
        }
      }
    } finally {
      pt.delete()
    }
    return out
  }

  private multiply(blobs: Uint8Array[], units: Unit[], id: string): [Uint8Array[], Ring[]] {
    const P = this.primes.length
    if (blobs.length % P !== 0) throw badMessage(this.peer, id)
    const cts: Ciphertext[] = []
    const pt = new this.seal.Plaintext()
    const ptNtt = new this.seal.Plaintext()
    const prod = new this.seal.Ciphertext()
    const term_ = new this.seal.Ciphertext()
    const reply: Uint8Array[] = []
    const shares: Ring[] = []
    try {
      for (const [i, blob] of blobs.entries()) {
        const ct = new this.seal.Ciphertext()
        cts.push(ct)
        try {
          ct.loadFromArray(this.primes[i % P].ctx, blob)
        } catch (e) {
          throw badMessage(this.peer, id, sealMessage(e))
        }
        // NTT form once per chunk: every unit multiplying this chunk skips the ciphertext's forward transform
        this.primes[i % P].evaluator.cipherTransformToNttInplace(ct)
      }
      for (const u of units) {
        if (u.terms.some((t) => (t.chunk + 1) * P > cts.length)) throw badMessage(this.peer, id)
        const { residues, low } = this.mask(u.slots)
        shares.push(ringScale(low, -1n))
        for (const [j, p] of this.primes.entries()) {
          // Σ_terms chunk · plain, accumulated in NTT form; one inverse transform per unit
          for (const [ti, term] of u.terms.entries()) {
            p.encoder.encode(term.plain(j), pt)
            p.evaluator.plainTransformToNtt(pt, p.ctx.firstParmsId(), ptNtt)
            p.evaluator.multiplyPlain(cts[term.chunk * P + j], ptNtt, ti === 0 ? prod : term_)
            if (ti > 0) p.evaluator.addInplace(prod, term_)
          }
          p.evaluator.cipherTransformFromNttInplace(prod)
          // down to the reply level: hides the computation noise under rounding noise (see COEFF_BITS), and the
          // mask addition, the reply and the peer's decryption get cheaper
          for (let d = 0; d < REPLY_SWITCHES; d++) p.evaluator.cipherModSwitchToNextInplace(prod)
          p.encoder.encode(residues[j], pt)
          p.evaluator.addPlainInplace(prod, pt)
          reply.push(prod.saveToArray(this.seal.ComprModeType.none) as Uint8Array)
        }
      }
    } catch (e) {
      throw e instanceof SyndicateError
        ? e
        : new SyndicateError('ERR_MPC_HE', `homomorphic evaluation failed: ${sealMessage(e)}; abort the job`)
    } finally {
      for (const o of [...cts, pt, ptNtt, prod, term_]) o.delete()
    }
    return [reply, shares]
  }

  /** A fresh mask R uniform in Z_T per slot: independent uniform residues, and R mod 2^64. */
  private mask(n: number): { residues: BigUint64Array[]; low: Ring } {
    const residues = this.primes.map((p) => this.uniformBelow(p.t, n))
    return { residues, low: this.combine(residues, n) }
  }

  /** n uniform values in [0, t) for a prime t in (2^59, 2^60): 60 random bits, redrawn while >= t. */
  private uniformBelow(t: bigint, n: number): BigUint64Array {
    const out = this.prg.ring(n)
    const w = new Uint32Array(out.buffer)
    for (let i = 0; i < n; i++) {
      w[2 * i + 1] &= 0x0fffffff
      while (out[i] >= t) {
        const fresh = new Uint32Array(this.prg.ring(1).buffer)
        w[2 * i] = fresh[0]
        w[2 * i + 1] = fresh[1] & 0x0fffffff
      }
    }
    return out
  }

  private decryptProducts(blobs: Uint8Array[], lengths: number[], id: string): Ring[] {
    const P = this.primes.length
    if (blobs.length !== P * lengths.length) throw badMessage(this.peer, id)
    const ct = new this.seal.Ciphertext()
    const pt = new this.seal.Plaintext()
    const out: Ring[] = []
    try {
      for (const [u, len] of lengths.entries()) {
        const residues: BigUint64Array[] = []
        for (const [j, p] of this.primes.entries()) {
          try {
            ct.loadFromArray(p.ctx, blobs[u * P + j])
          } catch (e) {
            throw badMessage(this.peer, id, sealMessage(e))
          }
          p.decryptor.decrypt(ct, pt)
          residues.push(p.encoder.decodeBigUint64(pt) as BigUint64Array)
        }
        out.push(this.combine(residues, len))
      }
    } finally {
      ct.delete()
      pt.delete()
    }
    return out
  }

  /** Garner's CRT: the integers in [0, T) with the given residues (first n slots), reduced mod 2^64. */
  private combine(residues: BigUint64Array[], n: number): Ring {
    const [t1, t2, t3] = this.primes.map((p) => p.t)
    const { c12, t1m3, c123, t12low } = this.garner
    const [r1, r2, r3] = residues
    const out = new BigUint64Array(n)
    for (let s = 0; s < n; s++) {
      const u1 = r1[s]
      const u2 = ((r2[s] + t2 - (u1 % t2)) * c12) % t2
      let u3 = (r3[s] + 2n * t3 - (u1 % t3) - ((t1m3 * u2) % t3)) % t3
      u3 = (u3 * c123) % t3
      out[s] = u1 + t1 * u2 + t12low * u3 // the typed array keeps it mod 2^64
    }
    return out
  }
}

interface Garner {
  c12: bigint
  t1m3: bigint
  c123: bigint
  t12low: bigint
}

function garnerConstants([t1, t2, t3]: bigint[]): Garner {
  return {
    c12: modPow(t1 % t2, t2 - 2n, t2),
    t1m3: t1 % t3,
    c123: modPow((t1 * t2) % t3, t3 - 2n, t3),
    t12low: BigInt.asUintN(64, t1 * t2),
  }
}

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n
  let x = b % m
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % m
    x = (x * x) % m
  }
  return r
}

function badMessage(from: string, id: string, detail?: string): SyndicateError {
  return new SyndicateError(
    ERR_MPC_BAD_MESSAGE,
    `party ${from} sent malformed homomorphic material under ${id}${detail ? ` (${detail})` : ''}; abort the job`,
    { from, tag: id },
  )
}

/** The encrypted side's chunks of B, indexed by `chunkId`. */
function encryptedChunks(L: MatmulLayout, b: Ring): Ring[] {
  const out: Ring[] = []
  for (let s = 0; s < L.S; s++)
    for (let jb = 0; jb < L.cols.length; jb++) out[chunkId(L, s, jb)] = encryptedChunk(L, b, s, jb)
  return out
}

/** The plaintext side's units for A (already reduced mod each prime, in `aMod`). */
function matmulUnits(L: MatmulLayout, aMod: Ring[]): Unit[] {
  return L.units.map((u) => {
    const terms: Unit['terms'] = []
    for (let s = u.s0; s < u.s1; s++) {
      terms.push({ chunk: chunkId(L, s, u.jb), plain: (j: number) => plainTerm(L, aMod[j], u.i0, u.jb, s) })
    }
    return { slots: blockSlots(L, u.jb), terms }
  })
}
