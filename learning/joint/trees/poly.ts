/**
 * BFV in coefficient encoding, the minimum SecureBoost needs on top of crypto/he (which packs values in batching
 * slots only). A row chunk of gradients is one polynomial G(x) = Σ_i gh_i·x^i (i < n); a feature holder
 * multiplies it by its plaintext indicator polynomial P(x) = Σ_i x^(bin_i·n + n−1−i), so the coefficient at
 * b·n + n−1 of G·P is Σ_{i: bin_i = b} gh_i: one ciphertext-plaintext product yields a whole feature histogram
 * (all other coefficients are cross terms, masked before anything goes back). See docs/secureboost.md.
 *
 * Keys, envelopes, parameter checks and (de)serialisation stay those of crypto/he (preset bfv-8192); this file
 * only adds coefficient plaintexts, NTT-domain products, raw decryption and edits of SEAL's uncompressed
 * serialisation (batched 0/1 NTTs, flooding, masking), which that wrapper does not expose.
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import type { Ciphertext, Decryptor, Encryptor, Evaluator, Plaintext } from 'node-seal'
import { SyndicateError } from '../../../crypto/errors.ts'
import { ENVELOPE_KIND, HE_PRESETS, HeEvaluator, HeKeyOwner } from '../../../crypto/he/index.ts'

export const SB_PRESET = 'bfv-8192' as const
/** Its ring degree: coefficients per polynomial. */
export const SB_DEGREE: number = HE_PRESETS[SB_PRESET].polyDegree

/**
 * Memory for cached root indicator plaintexts (256 KiB per feature and chunk: 10 features × 24,000 rows take
 * ~250 MB). JavaScript buffers, not WebAssembly heap, so they are returned when training ends.
 */
const CACHE_BYTES = 512 * 1024 * 1024

/** Flooding noise at the histogram coefficients: ±2^FLOOD_BITS (see HistogramEngine #finish). */
const FLOOD_BITS = 67

/** A uniform integer in [−2^FLOOD_BITS, 2^FLOOD_BITS) from the CSPRNG. */
function floodNoise(): bigint {
  const b = randomBytes(9)
  let v = 0n
  for (const x of b) v = (v << 8n) | BigInt(x)
  return (v & ((1n << BigInt(FLOOD_BITS + 1)) - 1n)) - (1n << BigInt(FLOOD_BITS))
}

/** Plaintext polynomials from/to coefficient arrays, over SEAL's own (uncompressed) serialisation. */
class Coefficients {
  readonly degree: number
  readonly t: bigint
  readonly #ev: HeEvaluator
  readonly #template: Uint8Array

  constructor(ev: HeEvaluator) {
    this.#ev = ev
    this.degree = ev.slots // BFV: one slot per coefficient
    this.t = ev.plainModulus
    const pt = new ev.seal.Plaintext(this.degree)
    try {
      this.#template = pt.saveToArray(ev.seal.ComprModeType.none) as Uint8Array
    } finally {
      pt.delete()
    }
    // The coefficients are the last degree·8 bytes of an uncompressed plaintext; anything else means a SEAL
    // serialisation change we must not paper over.
    if (this.#template.length < this.degree * 8 + 48) {
      throw new SyndicateError('ERR_HE_INTERNAL', 'unexpected SEAL plaintext layout', {})
    }
  }

  /** A plaintext with the given coefficients (each in [0, t)). */
  plaintext(coeffs: BigUint64Array): Plaintext {
    const bytes = this.#template.slice()
    bytes.set(
      new Uint8Array(coeffs.buffer, coeffs.byteOffset, this.degree * 8),
      bytes.length - this.degree * 8,
    )
    const pt = new this.#ev.seal.Plaintext()
    try {
      pt.loadFromArray(this.#ev.context, bytes)
    } catch (e) {
      pt.delete()
      throw e
    }
    return pt
  }

  /** The coefficients of a (non-NTT) plaintext, zero-padded to the ring degree. */
  read(pt: Plaintext): BigUint64Array {
    const bytes = pt.saveToArray(this.#ev.seal.ComprModeType.none) as Uint8Array
    const count = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(48, true))
    const out = new BigUint64Array(this.degree)
    const start = bytes.length - count * 8
    new Uint8Array(out.buffer).set(bytes.subarray(start, start + Math.min(count, this.degree) * 8))
    return out
  }

  /** Uniform values mod `m` (default t) from the CSPRNG (rejection sampling on 32-bit limbs; m < 2^64). */
  uniform(count: number, m: bigint = this.t): BigUint64Array {
    const out = new BigUint64Array(count)
    const w = new Uint32Array(out.buffer)
    const bits = m.toString(2).length
    const mHi = Number(m >> 32n)
    const mLo = Number(m & 0xffffffffn)
    const hiMask = 2 ** (bits - 32) - 1
    const one = new Uint32Array(2)
    randomFillSync(w)
    for (let i = 0; i < count; i++) {
      let lo = w[2 * i]
      let hi = w[2 * i + 1] & hiMask
      while (hi > mHi || (hi === mHi && lo >= mLo)) {
        randomFillSync(one)
        lo = one[0]
        hi = one[1] & hiMask
      }
      w[2 * i] = lo
      w[2 * i + 1] = hi
    }
    return out
  }
}

/** The label holder's side: key pair, symmetric (seeded) encryption of gradient chunks, raw decryption. */
export class GradientKeys {
  readonly owner: HeKeyOwner
  readonly coeffs: Coefficients
  readonly #encryptor: Encryptor
  readonly #decryptor: Decryptor

  private constructor(owner: HeKeyOwner) {
    this.owner = owner
    const ev = owner.evaluator
    this.coeffs = new Coefficients(ev)
    // The wrapper keeps its secret key private; rebuild SEAL's key object from its own export.
    const env = ev.openOwn(owner.exportSecretKey(), ENVELOPE_KIND.secretKey)
    const sk = new ev.seal.SecretKey()
    try {
      sk.loadFromArray(ev.context, env.parts[0])
      this.#encryptor = new ev.seal.Encryptor(ev.context, ev.publicKey, sk)
      this.#decryptor = new ev.seal.Decryptor(ev.context, sk)
    } finally {
      sk.delete()
    }
  }

  static async generate(): Promise<GradientKeys> {
    const owner = await HeKeyOwner.generate(SB_PRESET, { relin: false })
    try {
      return new GradientKeys(owner)
    } catch (e) {
      owner.free()
      throw e
    }
  }

  get bundle(): Uint8Array {
    return this.owner.publicBundle()
  }

  /**
   * Encrypts a coefficient vector (values in [0, t)) to wire bytes: SEAL's seeded form (half the size), not
   * zstd-compressed — uniform coefficients compress by only ~18% and zstd costs more CPU than the bytes save.
   */
  encrypt(coeffs: BigUint64Array): Uint8Array {
    const ev = this.owner.evaluator
    const pt = this.coeffs.plaintext(coeffs)
    try {
      const ser = this.#encryptor.encryptSymmetricSerializable(pt)
      try {
        return ev.envelope([ser.saveToArray(ev.seal.ComprModeType.none) as Uint8Array], this.coeffs.degree)
      } finally {
        ser.delete()
      }
    } finally {
      pt.delete()
    }
  }

  /** Decrypts one received single-ciphertext envelope to its coefficients. */
  decrypt(bytes: Uint8Array): BigUint64Array {
    const ev = this.owner.evaluator
    const v = ev.deserialize(bytes)
    const pt = new ev.seal.Plaintext()
    try {
      if (v.ciphertexts.length !== 1) {
        throw new SyndicateError('ERR_HE_MALFORMED', 'expected one ciphertext per histogram', {})
      }
      // No invariantNoiseBudget check: the feature holder replaces every non-histogram coefficient by a uniform
      // value mod q (HistogramEngine), so the "noise" there is uniform by design; the histogram coefficients'
      // noise is bounded analytically (docs/secureboost.md, Noise).
      const ct = v.ciphertexts[0]
      this.#decryptor.decrypt(ct, pt)
      return this.coeffs.read(pt)
    } finally {
      pt.delete()
      v.free()
    }
  }

  free(): void {
    this.#encryptor.delete()
    this.#decryptor.delete()
    this.owner.free()
  }
}

/** One node's histograms under way in one engine (see `HistogramEngine.begin`). */
export interface NodeHistograms {
  /** Adds gradient chunk `index` (rows[index·n .. index·n+n)); chunks may come in any order, each once. */
  add(chunk: Uint8Array, index: number): void
  /** Chunks added so far. */
  readonly added: number
  /**
   * The running sums of `features` as (NTT-form, uncompressed) ciphertext bytes, null where this engine got no
   * chunk: partial sums for another engine of the same party (`merge`), never for the wire.
   */
  partials(features: readonly number[]): (Uint8Array | null)[]
  /** Adds another engine's partial sum of feature `f` for the same node. */
  merge(f: number, bytes: Uint8Array): void
  /** The masked histogram ciphertext of each of `features` (default: all), as wire bytes. */
  finish(features?: readonly number[]): Uint8Array[]
  free(): void
}

/**
 * A feature holder's side: from the label holder's public bundle, turns encrypted gradient chunks and its own
 * bin codes into one masked histogram ciphertext per feature. Several engines (worker threads, pool.ts) can
 * share a node: each adds some chunks, then the partial sums are merged into the engine that finishes them.
 */
export class HistogramEngine {
  readonly ev: HeEvaluator
  readonly coeffs: Coefficients
  readonly #evaluator: Evaluator
  readonly #encryptor: Encryptor
  readonly #cacheBytes: number
  /** NTT-form indicator plaintexts (one per feature) of the reusable layout, by `n:chunk`. */
  readonly #cache = new Map<string, Uint8Array[]>()
  readonly #template = new Map<string, { ct: Uint8Array; pt: Uint8Array; size: number }>()
  #cached = 0
  /** The primes of each level we edit serialised ciphertexts at, by parms id. */
  readonly #primes = new Map<string, bigint[]>()

  private constructor(ev: HeEvaluator, cacheBytes: number) {
    this.ev = ev
    this.coeffs = new Coefficients(ev)
    this.#cacheBytes = cacheBytes
    this.#evaluator = new ev.seal.Evaluator(ev.context)
    this.#encryptor = new ev.seal.Encryptor(ev.context, ev.publicKey)
  }

  static async fromBundle(bundle: Uint8Array, cacheBytes = CACHE_BYTES): Promise<HistogramEngine> {
    const ev = await HeEvaluator.fromBundle(bundle)
    if (ev.preset !== SB_PRESET) {
      ev.free()
      throw new SyndicateError(
        'ERR_HE_PARAMS_MISMATCH',
        `SecureBoost needs HE preset ${SB_PRESET}, the label holder sent ${ev.preset}`,
        { preset: ev.preset },
      )
    }
    return new HistogramEngine(ev, cacheBytes)
  }

  /**
   * Σ_c chunk_c · P_{f,c} for every feature f, where chunk c holds rows[c·n .. c·n+n) and `binOf(f, row)` is the
   * row's bin of feature f (< widths[f], widths[f]·n <= degree). Every coefficient except the histogram ones
   * (b·n + n−1) is replaced by a uniform value, so the key owner learns exactly the bin sums.
   * `reusable`: this row layout comes again (the root: all rows, in order, every tree), so the NTT-form
   * indicator plaintexts are kept (as bytes, up to the cache budget) instead of being rebuilt each time.
   */
  histograms(
    chunks: readonly Uint8Array[],
    rows: Uint32Array,
    n: number,
    widths: readonly number[],
    binOf: (f: number, row: number) => number,
    reusable = false,
  ): Uint8Array[] {
    if (chunks.length !== Math.ceil(rows.length / n)) {
      throw new SyndicateError('ERR_HE_BAD_INPUT', 'a histogram needs every chunk of its rows', {})
    }
    const node = this.begin(rows, n, widths, binOf, reusable)
    try {
      chunks.forEach((c, i) => {
        node.add(c, i)
      })
      return node.finish()
    } finally {
      node.free()
    }
  }

  /** The same, fed chunk by chunk as they arrive (then `finish`; always `free`). */
  begin(
    rows: Uint32Array,
    n: number,
    widths: readonly number[],
    binOf: (f: number, row: number) => number,
    reusable = false,
  ): NodeHistograms {
    const seal = this.ev.seal
    const chunks = Math.ceil(rows.length / n)
    const acc: (Ciphertext | undefined)[] = widths.map(() => undefined)
    const seen = new Uint8Array(chunks)
    const tmp = new seal.Ciphertext()
    let added = 0
    const add = (chunk: Uint8Array, c: number) => {
      if (!Number.isInteger(c) || c < 0 || c >= chunks || seen[c]) {
        throw new SyndicateError('ERR_HE_BAD_INPUT', `gradient chunk ${c} is out of range or repeated`, {})
      }
      seen[c] = 1
      const start = c * n
      const v = this.ev.deserialize(chunk)
      const ntt = new seal.Ciphertext()
      try {
        if (v.ciphertexts.length !== 1) {
          throw new SyndicateError('ERR_HE_MALFORMED', 'expected one ciphertext per gradient chunk', {})
        }
        // One data prime fewer for everything that follows (a quarter of the products' cost); the noise stays
        // far below the budget (see #finish and docs/secureboost.md, Noise).
        this.#evaluator.cipherModSwitchToNextInplace(v.ciphertexts[0])
        this.#evaluator.cipherTransformToNtt(v.ciphertexts[0], ntt)
        const end = Math.min(rows.length, start + n)
        const pts = this.#indicators(c, start, end, n, rows, widths.length, binOf, v.ciphertexts[0], reusable)
        try {
          pts.forEach((pt, f) => {
            const a = acc[f]
            if (a) {
              this.#evaluator.multiplyPlain(ntt, pt, tmp)
              this.#evaluator.addInplace(a, tmp)
            } else {
              const fresh = new seal.Ciphertext()
              acc[f] = fresh
              this.#evaluator.multiplyPlain(ntt, pt, fresh)
            }
          })
        } finally {
          for (const pt of pts) pt.delete()
        }
        added++
      } finally {
        ntt.delete()
        v.free()
      }
    }
    const partials = (features: readonly number[]) =>
      features.map((f) => {
        const a = acc[f]
        return a ? (a.saveToArray(seal.ComprModeType.none) as Uint8Array) : null
      })
    const merge = (f: number, bytes: Uint8Array) => {
      const ct = new seal.Ciphertext()
      try {
        ct.loadFromArray(this.ev.context, bytes)
        const a = acc[f]
        if (!a) {
          acc[f] = ct
          return
        }
        this.#evaluator.addInplace(a, ct)
      } catch (e) {
        ct.delete()
        throw e
      }
      ct.delete()
    }
    const finish = (features: readonly number[] = widths.map((_, f) => f)) =>
      features.map((f) => {
        const a = acc[f]
        if (!a) throw new SyndicateError('ERR_HE_BAD_INPUT', 'a histogram needs the chunks of its rows', {})
        return this.#finish(a, n, widths[f])
      })
    let freed = false
    const free = () => {
      if (freed) return
      freed = true
      tmp.delete()
      for (const a of acc) a?.delete()
    }
    return {
      add,
      get added() {
        return added
      },
      partials,
      merge,
      finish,
      free,
    }
  }

  /**
   * Circuit privacy and masking of one summed (NTT-form, three-prime) histogram ciphertext; returns wire bytes.
   * 1. c1 is Σ a_c·P_c with the a_c the key owner chose: a fresh public-key encryption of zero makes it uniform.
   * 2. The noise Σ e_c·P_c carries P: at the histogram coefficients c0 gets uniform "flooding" noise in ±2^FLOOD_BITS,
   *    2^40 times the largest possible product noise (rows · N/2 < 2^27), so the sum is within 2^-40 of
   *    independent of P; everything stays below Δ/2 ≈ 2^69.
   * 3. Switching to two primes halves the reply (noise ≈ 2^23 < Δ'/2 ≈ 2^25).
   * 4. Every other coefficient holds cross terms (partial sums over other row sets): its c0 is replaced by a
   *    uniform value mod q, so it decrypts to a value independent of everything.
   * Steps 2 and 4 edit SEAL's uncompressed serialisation, whose last 2·L·N words are c0 then c1, limb by limb.
   */
  #finish(a: Ciphertext, n: number, width: number): Uint8Array {
    const seal = this.ev.seal
    const N = this.coeffs.degree
    const keep = Array.from({ length: width }, (_, b) => b * n + n - 1)
    this.#evaluator.cipherTransformFromNttInplace(a)
    const zero = new seal.Ciphertext()
    const flooded = new seal.Ciphertext()
    try {
      this.#encryptor.encryptZero(zero)
      const parms = a.parmsId()
      try {
        this.#evaluator.cipherModSwitchToInplace(zero, parms)
      } finally {
        parms.delete()
      }
      this.#evaluator.addInplace(a, zero)
      const bytes = a.saveToArray(seal.ComprModeType.none) as Uint8Array
      const primes = this.#primesOf(a)
      const c0 = this.#c0Offset(bytes, primes.length)
      for (const k of keep) {
        const e = floodNoise()
        primes.forEach((q, l) => {
          const at = c0 + (l * N + k) * 8
          const view = new DataView(bytes.buffer, bytes.byteOffset + at, 8)
          view.setBigUint64(0, (((view.getBigUint64(0, true) + e) % q) + q) % q, true)
        })
      }
      flooded.loadFromArray(this.ev.context, bytes)
      this.#evaluator.cipherModSwitchToNextInplace(flooded)
      const out = flooded.saveToArray(seal.ComprModeType.none) as Uint8Array
      const last = this.#primesOf(flooded)
      const at0 = this.#c0Offset(out, last.length)
      last.forEach((q, l) => {
        const limb = new Uint8Array(this.coeffs.uniform(N, q).buffer)
        const at = at0 + l * N * 8
        for (const k of keep) limb.set(out.subarray(at + k * 8, at + k * 8 + 8), k * 8)
        out.set(limb, at)
      })
      return this.ev.envelope([out], N)
    } finally {
      zero.delete()
      flooded.delete()
    }
  }

  /** Where c0 starts in an uncompressed two-polynomial ciphertext of `limbs` primes. */
  #c0Offset(bytes: Uint8Array, limbs: number): number {
    const at = bytes.length - 2 * limbs * this.coeffs.degree * 8
    if (at < 0) throw new SyndicateError('ERR_HE_INTERNAL', 'unexpected SEAL ciphertext layout', {})
    return at
  }

  #primesOf(ct: Ciphertext): bigint[] {
    const parms = ct.parmsId()
    try {
      const key = parms.values().join(',')
      let primes = this.#primes.get(key)
      if (!primes) {
        const data = this.ev.context.getContextData(parms)
        const ep = data.parms()
        const moduli = ep.coeffModulus()
        primes = []
        for (let i = 0; i < moduli.size(); i++) {
          const m = moduli.get(i)!
          primes.push(m.value())
          m.delete()
        }
        moduli.delete()
        ep.delete()
        data.delete()
        this.#primes.set(key, primes)
      }
      return primes
    } finally {
      parms.delete()
    }
  }

  /**
   * P_{f,c} for every feature, in NTT form at the level of `like` (a coefficient-form ciphertext): from the
   * cache, or built and cached if `reusable`. SEAL's plaintext NTT first lifts every coefficient from mod t to
   * mod q with multi-precision arithmetic (t exceeds the primes here); the indicators are 0/1, already valid mod
   * q, so they are written as the polynomials of one size-F "ciphertext" and transformed together with the
   * ciphertext NTT, which skips the lift (about half the cost of a plaintext NTT).
   */
  #indicators(
    c: number,
    start: number,
    end: number,
    n: number,
    rows: Uint32Array,
    features: number,
    binOf: (f: number, row: number) => number,
    like: Ciphertext,
    reusable: boolean,
  ): Plaintext[] {
    const seal = this.ev.seal
    const N = this.coeffs.degree
    const L = like.coeffModulusSize()
    const key = `${n}:${c}`
    let polys = reusable ? this.#cache.get(key) : undefined
    if (!polys) {
      polys = []
      // SEAL ciphertexts hold at most 16 polynomials: groups of up to 16 features.
      for (let first = 0; first < features; first += 16) {
        const count = Math.min(16, features - first)
        const t = this.#templates(like, count)
        const bytes = t.ct.slice()
        const at = bytes.length - t.size * L * N * 8
        bytes.fill(0, at)
        for (let f = 0; f < count; f++) {
          for (let i = start; i < end; i++) {
            const k = binOf(first + f, rows[i]) * n + (n - 1 - (i - start))
            for (let l = 0; l < L; l++) bytes[at + ((f * L + l) * N + k) * 8] = 1
          }
        }
        const ct = new seal.Ciphertext()
        try {
          ct.loadFromArray(this.ev.context, bytes)
          this.#evaluator.cipherTransformToNttInplace(ct)
          const out = ct.saveToArray(seal.ComprModeType.none) as Uint8Array
          const from = out.length - t.size * L * N * 8
          for (let f = 0; f < count; f++) {
            const pt = t.pt.slice()
            pt.set(out.subarray(from + f * L * N * 8, from + (f + 1) * L * N * 8), pt.length - L * N * 8)
            polys.push(pt)
          }
        } finally {
          ct.delete()
        }
      }
      if (reusable && this.#cached < this.#cacheBytes) {
        this.#cache.set(key, polys)
        this.#cached += polys.reduce((sum, b) => sum + b.length, 0)
      }
    }
    const out: Plaintext[] = []
    try {
      for (const b of polys) {
        const pt = new seal.Plaintext()
        out.push(pt)
        pt.loadFromArray(this.ev.context, b)
      }
    } catch (e) {
      for (const pt of out) pt.delete()
      throw e
    }
    return out
  }

  /**
   * Serialisation templates at the level of `like`: a coefficient-form ciphertext of max(2, features)
   * polynomials and an NTT-form plaintext (their data is the last words; the headers carry level and form).
   */
  #templates(like: Ciphertext, features: number): { ct: Uint8Array; pt: Uint8Array; size: number } {
    const seal = this.ev.seal
    const parms = like.parmsId()
    try {
      const size = Math.max(2, features)
      const key = `${parms.values().join(',')}:${size}`
      let t = this.#template.get(key)
      if (!t) {
        const ct = like.copy()
        const pt = this.coeffs.plaintext(new BigUint64Array(this.coeffs.degree))
        try {
          ct.resize(size)
          this.#evaluator.plainTransformToNttInplace(pt, parms)
          t = {
            ct: ct.saveToArray(seal.ComprModeType.none) as Uint8Array,
            pt: pt.saveToArray(seal.ComprModeType.none) as Uint8Array,
            size,
          }
        } finally {
          ct.delete()
          pt.delete()
        }
        this.#template.set(key, t)
      }
      return t
    } finally {
      parms.delete()
    }
  }

  free(): void {
    this.#cache.clear()
    this.#encryptor.delete()
    this.#evaluator.delete()
    this.ev.free()
  }
}
