/**
 * BFV in coefficient encoding, the minimum SecureBoost needs on top of crypto/he (which packs values in batching
 * slots only). A row chunk of gradients is one polynomial G(x) = Σ_i gh_i·x^i (i < n); a feature holder
 * multiplies it by its plaintext indicator polynomial P(x) = Σ_i x^(bin_i·n + n−1−i), so the coefficient at
 * b·n + n−1 of G·P is Σ_{i: bin_i = b} gh_i: one ciphertext-plaintext product yields a whole feature histogram
 * (all other coefficients are cross terms, masked before anything goes back). See docs/secureboost.md.
 *
 * Keys, envelopes, parameter checks and (de)serialisation stay those of crypto/he (preset bfv-8192); this file
 * only adds coefficient plaintexts, NTT-domain products and raw decryption, which that wrapper does not expose.
 */
import { randomFillSync } from 'node:crypto'
import type { Ciphertext, Decryptor, Encryptor, Evaluator, ParmsIdType, Plaintext } from 'node-seal'
import { SyndicateError } from '../../../crypto/errors.ts'
import { ENVELOPE_KIND, HeEvaluator, HeKeyOwner } from '../../../crypto/he/index.ts'

export const SB_PRESET = 'bfv-8192' as const

/**
 * Memory for cached root indicator plaintexts (256 KiB per feature and chunk: 10 features × 24,000 rows take
 * ~250 MB). JavaScript buffers, not WebAssembly heap, so they are returned when training ends.
 */
const CACHE_BYTES = 512 * 1024 * 1024

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

  /** Uniform values mod t from the CSPRNG (rejection sampling on 32-bit limbs; t is just below 2^60). */
  uniform(count: number): BigUint64Array {
    const out = new BigUint64Array(count)
    const w = new Uint32Array(out.buffer)
    const bits = this.t.toString(2).length
    const tHi = Number(this.t >> 32n)
    const tLo = Number(this.t & 0xffffffffn)
    const hiMask = 2 ** (bits - 32) - 1
    const one = new Uint32Array(2)
    randomFillSync(w)
    for (let i = 0; i < count; i++) {
      let lo = w[2 * i]
      let hi = w[2 * i + 1] & hiMask
      while (hi > tHi || (hi === tHi && lo >= tLo)) {
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
      const ct = v.ciphertexts[0]
      if (this.#decryptor.invariantNoiseBudget(ct) <= 0) {
        throw new SyndicateError(
          'ERR_HE_NOISE_EXHAUSTED',
          'a histogram ciphertext has no noise budget left; use fewer rows per chunk',
          {},
        )
      }
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

/**
 * A feature holder's side: from the label holder's public bundle, turns encrypted gradient chunks and its own
 * bin codes into one masked histogram ciphertext per feature.
 */
export class HistogramEngine {
  readonly ev: HeEvaluator
  readonly coeffs: Coefficients
  readonly #evaluator: Evaluator
  readonly #encryptor: Encryptor
  /** NTT-form indicator plaintexts of the reusable layout, by `n:chunk:feature`. */
  readonly #cache = new Map<string, Uint8Array>()
  #cached = 0

  private constructor(ev: HeEvaluator) {
    this.ev = ev
    this.coeffs = new Coefficients(ev)
    this.#evaluator = new ev.seal.Evaluator(ev.context)
    this.#encryptor = new ev.seal.Encryptor(ev.context, ev.publicKey)
  }

  static async fromBundle(bundle: Uint8Array): Promise<HistogramEngine> {
    const ev = await HeEvaluator.fromBundle(bundle)
    if (ev.preset !== SB_PRESET) {
      ev.free()
      throw new SyndicateError(
        'ERR_HE_PARAMS_MISMATCH',
        `SecureBoost needs HE preset ${SB_PRESET}, the label holder sent ${ev.preset}`,
        { preset: ev.preset },
      )
    }
    return new HistogramEngine(ev)
  }

  /**
   * Σ_c chunk_c · P_{f,c} for every feature f, where chunk c holds rows[c·n .. c·n+n) and `binOf(f, row)` is the
   * row's bin of feature f (< widths[f], widths[f]·n <= degree). Every coefficient except the histogram ones
   * (b·n + n−1) is replaced by a uniform value, so the key owner learns exactly the bin sums.
   * `reusable`: this row layout comes again (the root: all rows, in order, every tree), so the NTT-form
   * indicator plaintexts are kept (as bytes, up to CACHE_BYTES) instead of being rebuilt each time.
   */
  histograms(
    chunks: readonly Uint8Array[],
    rows: Uint32Array,
    n: number,
    widths: readonly number[],
    binOf: (f: number, row: number) => number,
    reusable = false,
  ): Uint8Array[] {
    const node = this.begin(rows, n, widths, binOf, reusable)
    try {
      for (const c of chunks) node.add(c)
      return node.finish()
    } finally {
      node.free()
    }
  }

  /** The same, fed chunk by chunk as they arrive (`add` in chunk order, then `finish`; always `free`). */
  begin(
    rows: Uint32Array,
    n: number,
    widths: readonly number[],
    binOf: (f: number, row: number) => number,
    reusable = false,
  ): { add(chunk: Uint8Array): void; finish(): Uint8Array[]; free(): void } {
    const N = this.coeffs.degree
    const seal = this.ev.seal
    const acc: (Ciphertext | undefined)[] = widths.map(() => undefined)
    const tmp = new seal.Ciphertext()
    const poly = new BigUint64Array(N)
    let c = 0
    const add = (chunk: Uint8Array) => {
      const start = c * n
      if (start >= rows.length) throw new SyndicateError('ERR_HE_BAD_INPUT', 'more chunks than rows', {})
      const v = this.ev.deserialize(chunk)
      const ntt = new seal.Ciphertext()
      try {
        if (v.ciphertexts.length !== 1) {
          throw new SyndicateError('ERR_HE_MALFORMED', 'expected one ciphertext per gradient chunk', {})
        }
        this.#evaluator.cipherTransformToNtt(v.ciphertexts[0], ntt)
        const parms = ntt.parmsId()
        const end = Math.min(rows.length, start + n)
        try {
          for (let f = 0; f < widths.length; f++) {
            const pt = this.#indicator(f, c, start, end, n, rows, binOf, poly, parms, reusable)
            try {
              const a = acc[f]
              if (a) {
                this.#evaluator.multiplyPlain(ntt, pt, tmp)
                this.#evaluator.addInplace(a, tmp)
              } else {
                const fresh = new seal.Ciphertext()
                acc[f] = fresh
                this.#evaluator.multiplyPlain(ntt, pt, fresh)
              }
            } finally {
              pt.delete()
            }
          }
        } finally {
          parms.delete()
        }
        c++
      } finally {
        ntt.delete()
        v.free()
      }
    }
    const finish = () =>
      acc.map((a, f) => {
        if (!a || c * n < rows.length) {
          throw new SyndicateError('ERR_HE_BAD_INPUT', 'a histogram needs every chunk of its rows', {})
        }
        this.#evaluator.cipherTransformFromNttInplace(a)
        // Circuit privacy. The second component is Σ a_c·P_c with the a_c the key owner chose: a fresh public-key
        // encryption of zero makes it uniform. The noise (Σ e_c·P_c, ~2^16 here) would still carry P; dropping
        // two of the four data primes divides it by ~2^87, so what is left is the switch's own rounding noise.
        // (It also halves the reply.)
        const zero = new seal.Ciphertext()
        try {
          this.#encryptor.encryptZero(zero)
          this.#evaluator.addInplace(a, zero)
        } finally {
          zero.delete()
        }
        this.#evaluator.cipherModSwitchToNextInplace(a)
        this.#evaluator.cipherModSwitchToNextInplace(a)
        const mask = this.coeffs.uniform(N)
        for (let b = 0; b < widths[f]; b++) mask[b * n + n - 1] = 0n
        const pt = this.coeffs.plaintext(mask)
        try {
          this.#evaluator.addPlainInplace(a, pt)
        } finally {
          pt.delete()
        }
        // Uncompressed, as the chunks (see GradientKeys.encrypt).
        return this.ev.envelope([a.saveToArray(seal.ComprModeType.none) as Uint8Array], N)
      })
    let freed = false
    const free = () => {
      if (freed) return
      freed = true
      tmp.delete()
      for (const a of acc) a?.delete()
    }
    return { add, finish, free }
  }

  /** P_{f,c} in NTT form at the chunk's level: from the cache, or built (and cached if `reusable`). */
  #indicator(
    f: number,
    c: number,
    start: number,
    end: number,
    n: number,
    rows: Uint32Array,
    binOf: (f: number, row: number) => number,
    poly: BigUint64Array,
    parms: ParmsIdType,
    reusable: boolean,
  ): Plaintext {
    const seal = this.ev.seal
    const key = `${n}:${c}:${f}`
    const hit = reusable ? this.#cache.get(key) : undefined
    if (hit) {
      const pt = new seal.Plaintext()
      pt.loadFromArray(this.ev.context, hit) // 0.2 ms instead of 2–3 ms to build and transform
      return pt
    }
    poly.fill(0n)
    for (let i = start; i < end; i++) poly[binOf(f, rows[i]) * n + (n - 1 - (i - start))] = 1n
    const pt = this.coeffs.plaintext(poly)
    try {
      this.#evaluator.plainTransformToNttInplace(pt, parms)
      if (reusable && this.#cached < CACHE_BYTES) {
        const bytes = pt.saveToArray(seal.ComprModeType.none) as Uint8Array
        this.#cache.set(key, bytes)
        this.#cached += bytes.length
      }
      return pt
    } catch (e) {
      pt.delete()
      throw e
    }
  }

  free(): void {
    this.#cache.clear()
    this.#encryptor.delete()
    this.#evaluator.delete()
    this.ev.free()
  }
}
