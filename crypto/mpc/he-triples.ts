/**
 * Dealer-free correlated randomness for two parties with BFV homomorphic encryption (node-seal): nobody
 * outside the two computing parties is trusted.
 *
 * Each party samples its own shares A_i, B_i and needs shares of the cross terms A_0·B_1 and A_1·B_0. For
 * A_0·B_1, party 1 encrypts B_1 under its own secret key and sends it; party 0 multiplies by A_0 as plaintexts
 * (slotwise products accumulated per output ciphertext, see he-layout.ts: no rotation is needed), adds a random
 * mask R and returns the ciphertexts; party 1 decrypts P + R and party 0 keeps -R. The other cross term runs
 * the same way with the roles swapped, at the same time. Adding the slot shares gives shares of the product.
 * (Elementwise triples run one way: party 1 encrypts both A_1 and B_1 and party 0 returns both cross terms
 * under one mask.) Products with a matrix that one party holds in the clear for a whole session — a feature
 * block over the mini-batches of training — have their own generator, `fixedMatrix` (he-fixed.ts).
 *
 * Z(2^64) is not a BFV plaintext space (SEAL's plaintext modulus is at most 60 bits and must be prime for
 * slots), so each slot's sum P of products (< 2^138) is computed exactly as an integer: three batching primes
 * t_1 t_2 t_3 (T ≈ 2^180) in three contexts, recombined by the CRT (Garner). R is uniform in Z_T (its residues
 * are drawn independently), so the decrypting party's view P + R mod T is uniform and independent of P. Both
 * parties reduce their integers (P + R mod T, and -R) mod 2^64; that is exact unless P + R wraps mod T, which
 * happens with probability P / T < 2^-42 per slot. CKKS was not used: it is approximate, and triples must be
 * exact.
 *
 * A party only ever decrypts its own ciphertexts; the evaluator needs no keys. The reply is masked and then
 * switched down two modulus levels so that its noise reveals (almost) nothing about the multiplier's plaintext
 * (see COEFF_BITS in he-params.ts and docs/mpc.md for how far that goes; it is not full noise flooding). Plaintexts are added
 * to serialized ciphertexts directly, without SEAL's slow rounding division (he-reply.ts).
 *
 * Both parties must also run the same sequence of requests (as for every source).
 */
import type { Ciphertext, MainModule } from 'node-seal'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { loadSeal, sealMessage } from '../he/seal.ts'
import { FixedMatrix, type HeEngine, type OwnedTriple, PeerWorker } from './he-fixed.ts'
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
import { evalContexts, REPLY_SWITCHES } from './he-params.ts'
import { badMessage, encryptFast, heError, maskedReply, type PrimeContext } from './he-reply.ts'
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
  checkRequest,
  ERR_MPC_UNSUPPORTED,
  requestKey,
  StockedSource,
  type Triple,
} from './source.ts'
import { frame, unframe } from './wire.ts'

export { FixedMatrix, HE_POLY_DEGREE, type OwnedTriple }

/** Elementwise requests are pooled in `prepare` until they fill this many slots (a few ciphertexts). */
const BATCH_SLOTS = 4 * HE_POLY_DEGREE

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
  private peerWorker: PeerWorker | undefined

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
    const primes: PrimeContext[] = evalContexts(seal).map((ev) => {
      const keygen = new seal.KeyGenerator(ev.ctx)
      const sk = keygen.secretKey()
      const pk = keygen.createPublicKey()
      const p = {
        ...ev,
        encryptor: new seal.Encryptor(ev.ctx, pk, sk),
        decryptor: new seal.Decryptor(ev.ctx, sk),
        zero: zeroPlaintext(seal),
      }
      for (const o of [keygen, sk, pk]) o.delete()
      return p
    })
    return new HeTripleSource(ch, parties, seal, primes, opts.tag ?? 'mpc/he')
  }

  /**
   * Seconds this party spent computing (encrypting, multiplying, decrypting) rather than waiting for its peer:
   * with the parties on separate machines, the offline wall time approaches the larger of the two.
   */
  busySeconds(): number {
    return (this.busyMs + (this.peerWorker?.busyMs ?? 0)) / 1000
  }

  /**
   * Correlations for the products of a fixed matrix that `owner` holds in the clear (x, rows × cols; the other
   * party passes nothing) over disjoint row batches, e.g. a feature block over the mini-batches of each epoch
   * (he-fixed.ts). The owner encrypts x once here; dispose the result before the source.
   */
  fixedMatrix(owner: string, x: Ring | undefined, rows: number, cols: number): Promise<FixedMatrix> {
    return FixedMatrix.create(this.engine(), owner, x, rows, cols)
  }

  /**
   * Offline phase. Elementwise triples and random bits are generated several requests per exchange (their
   * vectors concatenated into full ciphertexts), then split: a plan of many short requests — e.g. 1024-element
   * products per mini-batch — costs as much as one long one.
   */
  override async prepare(plan: readonly CorrelationRequest[]): Promise<void> {
    const pending: CorrelationRequest[] = []
    const flush = async () => {
      const run = pending.splice(0)
      if (run.length === 0) return
      const kind = run[0].kind as 'mul' | 'bits'
      const lengths = run.map((r) => (r as { n: number }).n)
      const total = lengths.reduce((a, b) => a + b, 0)
      const id = `${this.tag}/${this.counter++}`
      const whole = kind === 'mul' ? await this.mulTriple_(id, total) : await this.bits_(id, total)
      let at = 0
      const items = lengths.map((n) => {
        const cut = (v: Ring) => v.slice(at, at + n)
        const item = 'a' in whole ? { a: cut(whole.a), b: cut(whole.b), c: cut(whole.c) } : cut(whole)
        at += n
        return item
      })
      this.stockItems(run, items)
    }
    for (const req of plan) {
      checkRequest(req)
      if (req.kind === 'mul' || req.kind === 'bits') {
        if (pending.length > 0 && pending[0].kind !== req.kind) await flush()
        pending.push(req)
        const slots = pending.reduce((t, r) => t + (r as { n: number }).n, 0)
        if (slots >= BATCH_SLOTS) await flush()
      } else {
        await flush()
        await super.prepare([req])
      }
    }
    await flush()
  }

  /** What the fixed-matrix generator uses from this source. */
  private engine(): HeEngine {
    return {
      seal: this.seal,
      primes: this.primes,
      ch: this.ch,
      peer: this.peer,
      prg: this.prg,
      worker: () => {
        this.peerWorker ??= new PeerWorker()
        return this.peerWorker
      },
      nextId: () => `${this.tag}/${this.counter++}`,
      mask: (n) => this.mask(n),
      combine: (residues, n) => this.combine(residues, n),
      busy: <T>(fn: () => T): T => {
        const t = performance.now()
        try {
          return fn()
        } finally {
          this.busyMs += performance.now() - t
        }
      },
    }
  }

  /** Releases the SEAL objects (keys, contexts) and stops the worker thread, if one was started. */
  dispose(): void {
    this.peerWorker?.terminate()
    for (const p of this.primes) {
      for (const o of [p.encoder, p.encryptor, p.decryptor, p.evaluator, p.zero, p.ctx]) o.delete()
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

  /**
   * Elementwise triples in one direction: the second party encrypts both its a and its b, the first multiplies
   * them by its own b and a and adds the two products under one mask, so a block of slots costs one reply and
   * one decryption instead of two of each.
   */
  private async mulTriple_(id: string, n: number): Promise<Triple> {
    const a = this.prg.ring(n)
    const b = this.prg.ring(n)
    const ranges = slotRanges(n)
    const own = ringMul(a, b)
    if (!this.lead) {
      const slice = (v: Ring) => ranges.map(([s, e]) => v.slice(s, e))
      const [, products] = await this.cross(
        id,
        [...slice(a), ...slice(b)],
        [],
        ranges.map(([s, e]) => e - s),
      )
      return { a, b, c: ringAdd(own, ringConcat(...products)) }
    }
    const aMod = this.primes.map((p) => ringRem(a, p.t))
    const bMod = this.primes.map((p) => ringRem(b, p.t))
    // unit i: the peer's a (chunk i) times my b, plus the peer's b (chunk R + i) times my a
    const units: Unit[] = ranges.map(([s, e], i) => ({
      slots: e - s,
      terms: [
        { chunk: i, plain: (j: number) => bMod[j].slice(s, e) },
        { chunk: ranges.length + i, plain: (j: number) => aMod[j].slice(s, e) },
      ],
    }))
    const [masks] = await this.cross(id, [], units, [])
    return { a, b, c: ringAdd(own, ringConcat(...masks)) }
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
        for (const p of this.primes) out.push(encryptFast(this.seal, p, ringRem(chunk, p.t), pt))
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
          // masked, then down to the reply level: hides the computation noise under rounding noise (see
          // COEFF_BITS), and the reply and the peer's decryption get cheaper
          reply.push(maskedReply(this.seal, p, prod, residues[j], REPLY_SWITCHES, pt))
        }
      }
    } catch (e) {
      throw heError(e)
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
    // Garner's digits u2, u3 in BigInt (products of 60-bit values); the recombination mod 2^64 in the ring
    // kernel. The primes are within a factor 2 of each other, so u1 mod t_i is at most one subtraction.
    const u2s = new BigUint64Array(n)
    const u3s = new BigUint64Array(n)
    for (let s = 0; s < n; s++) {
      const u1 = r1[s]
      const u2 = ((r2[s] + t2 - (u1 >= t2 ? u1 - t2 : u1)) * c12) % t2
      const u3 = (r3[s] + 2n * t3 - (u1 >= t3 ? u1 - t3 : u1) - ((t1m3 * u2) % t3)) % t3
      u2s[s] = u2
      u3s[s] = (u3 * c123) % t3
    }
    return ringAdd(ringAdd(r1.slice(0, n), ringScale(u2s, t1)), ringScale(u3s, t12low))
  }
}

/** A plaintext of one zero coefficient (see encryptFast). */
function zeroPlaintext(seal: MainModule) {
  const z = new seal.Plaintext()
  z.resize(1)
  z.setZero()
  return z
}

interface Garner {
  c12: bigint
  t1m3: bigint
  c123: bigint
  t12low: bigint
}

function garnerConstants([t1, t2, t3]: bigint[]): Garner {
  // combine() reduces u1 < t1 mod t2 and t3 with one conditional subtraction
  if (t1 >= 2n * t2 || t1 >= 2n * t3) throw new SyndicateError('ERR_MPC_HE', 'CRT primes too far apart')
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
