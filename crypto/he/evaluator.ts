import type {
  BatchEncoder,
  Ciphertext,
  CKKSEncoder,
  EncryptionParameters,
  Encryptor,
  Evaluator,
  GaloisKeys,
  MainModule,
  Plaintext,
  PublicKey,
  RelinKeys,
  SEALContext,
} from 'node-seal'
import { SyndicateError } from '../errors.ts'
import {
  bytesEqual,
  ENVELOPE_KIND,
  type Envelope,
  type EnvelopeKind,
  openEnvelope,
  sealEnvelope,
  toHex,
} from './envelope.ts'
import { zeroSumMask } from './mask.ts'
import {
  badInput,
  depthExhausted,
  hashParams,
  keyIdOf,
  loadSealObject,
  sameLength,
  schemeMismatch,
} from './material.ts'
import {
  buildContext,
  HE_PRESETS,
  type HePresetName,
  isPresetName,
  type PresetSpec,
  slotCount,
  sumSlotsSteps,
} from './params.ts'
import { loadSeal, type SealRuntime, sealMessage } from './seal.ts'
import { type HeInput, HeVector } from './vector.ts'

/**
 * A typed wrapper over node-seal for packed vectors. Two roles:
 *  - `HeKeyOwner` holds the secret key: generates keys, encrypts, decrypts, exports the public bundle.
 *  - `HeEvaluator` holds only public material (public, relinearisation and selected Galois keys) rebuilt from
 *    that bundle; it can encrypt and evaluate but never decrypt. A passive party builds one from the bytes it
 *    received.
 * A vector longer than one ciphertext is split into chunks of `slots` values. Every SEAL object the wrapper
 * creates is deleted by it; `HeVector.free()` releases a vector, `free()` on a role releases its keys.
 *
 * CKKS invariant: every ciphertext this wrapper produces has scale exactly 2^scaleBits, so any two can be
 * added. Plaintext products keep it exactly (the plaintext is encoded at the scale of the prime that the rescale
 * drops); ciphertext products reset it after rescaling, a relative error of |q/2^scaleBits - 1| (< 5e-5 for
 * ckks-4096, < 1e-6 for ckks-8192, < 6e-6 for ckks-16384).
 */

/**
 * Default bound on the decoded size of one received vector. zstd lets a small message expand into many
 * near-empty ciphertexts, so the bound is on what SEAL would allocate, checked before anything is parsed.
 */
const MAX_DECODED_BYTES = 256 * 1024 * 1024

export interface BundleMeta {
  preset: HePresetName
  relin: boolean
  steps: number[]
}

export class HeEvaluator {
  readonly preset: HePresetName
  readonly scheme: 'ckks' | 'bfv'
  /** Values per ciphertext. */
  readonly slots: number
  /** Hex SHA-256 fingerprint of the public key (with the parameters): names the key in logs and envelopes. */
  readonly keyId: string
  readonly galoisSteps: readonly number[]
  readonly hasRelinKeys: boolean
  /** BFV plaintext modulus t (0n for CKKS). */
  readonly plainModulus: bigint
  /** The public bundle this evaluator was built from (what to send to other evaluators). */
  readonly bundle: Uint8Array

  /** @internal SEAL objects shared with the key owner of the same context. */
  readonly seal: MainModule
  /** @internal */
  readonly context: SEALContext
  /** @internal */
  readonly encoder: CKKSEncoder | BatchEncoder
  /** @internal */
  readonly publicKey: PublicKey
  readonly #runtime: SealRuntime
  readonly #parms: EncryptionParameters
  readonly #evaluator: Evaluator
  readonly #encryptor: Encryptor
  readonly #relin: RelinKeys | undefined
  readonly #galois: GaloisKeys | undefined
  readonly #keyIdBytes: Uint8Array
  readonly #paramsHash: Uint8Array
  readonly #spec: PresetSpec
  /** CKKS: 2^scaleBits. BFV: 1. */
  readonly #scale: number
  /** CKKS: coefficient-modulus size at each level -> the prime a rescale at that level drops. */
  readonly #lastPrime = new Map<number, number>()
  readonly #plainHalf: bigint
  readonly #maxAbs: number
  #freed = false

  private constructor(
    runtime: SealRuntime,
    preset: HePresetName,
    built: { parms: EncryptionParameters; context: SEALContext },
    keys: { pk: PublicKey; rk?: RelinKeys; gk?: GaloisKeys; steps: number[] },
    ids: { keyId: Uint8Array; paramsHash: Uint8Array; bundle: Uint8Array },
  ) {
    const seal = runtime.seal
    this.#runtime = runtime
    this.seal = seal
    this.preset = preset
    this.#spec = HE_PRESETS[preset]
    this.scheme = this.#spec.scheme
    this.slots = slotCount(preset)
    this.#parms = built.parms
    this.context = built.context
    this.publicKey = keys.pk
    this.#relin = keys.rk
    this.#galois = keys.gk
    this.galoisSteps = [...keys.steps]
    this.hasRelinKeys = keys.rk !== undefined
    this.#keyIdBytes = ids.keyId
    this.keyId = toHex(ids.keyId)
    this.#paramsHash = ids.paramsHash
    this.bundle = ids.bundle
    this.#evaluator = new seal.Evaluator(this.context)
    this.#encryptor = new seal.Encryptor(this.context, this.publicKey)
    if (this.#spec.scheme === 'ckks') {
      this.encoder = new seal.CKKSEncoder(this.context)
      this.#scale = 2 ** this.#spec.scaleBits
      this.#maxAbs = 2 ** (this.#spec.coeffBits[0] - this.#spec.scaleBits - 1)
      this.#plainHalf = 0n
      this.plainModulus = 0n
    } else {
      this.encoder = new seal.BatchEncoder(this.context)
      this.#scale = 1
      this.#maxAbs = 0
      const t = this.#parms.plainModulus()
      this.plainModulus = t.value()
      this.#plainHalf = this.plainModulus / 2n
      t.delete()
    }
    this.#readLevels()
  }

  /** Builds an evaluator from a public bundle received from the key owner. */
  static async fromBundle(bundle: Uint8Array): Promise<HeEvaluator> {
    return HeEvaluator.build(await loadSeal(), bundle)
  }

  /** @internal Also used by HeKeyOwner with the context it generated the keys in. */
  static build(
    runtime: SealRuntime,
    bundle: Uint8Array,
    built?: { parms: EncryptionParameters; context: SEALContext },
  ): HeEvaluator {
    const env = openEnvelope(bundle, ENVELOPE_KIND.publicKeys)
    const meta = parseBundleMeta(env.meta, env.parts.length)
    const ctx = built ?? buildContext(runtime.seal, meta.preset)
    const loaded: { pk?: PublicKey; rk?: RelinKeys; gk?: GaloisKeys } = {}
    try {
      const paramsHash = hashParams(runtime.seal, ctx.parms)
      if (!bytesEqual(paramsHash, env.paramsHash)) {
        throw new SyndicateError(
          'ERR_HE_PARAMS_MISMATCH',
          `the key bundle was made for different ${meta.preset} parameters (another SEAL or Syndicate version?); ` +
            'both parties must run the same version',
          { preset: meta.preset },
        )
      }
      const pkBytes = env.parts[0]
      const keyId = keyIdOf(paramsHash, meta.preset, pkBytes)
      if (!bytesEqual(keyId, env.keyId)) {
        throw new SyndicateError(
          'ERR_HE_MALFORMED',
          'key bundle fingerprint does not match its public key',
          {},
        )
      }
      const seal = runtime.seal
      loaded.pk = loadSealObject(() => new seal.PublicKey(), ctx.context, pkBytes, 'public key')
      let next = 1
      if (meta.relin)
        loaded.rk = loadSealObject(() => new seal.RelinKeys(), ctx.context, env.parts[next++], 'relin keys')
      if (meta.steps.length > 0) {
        loaded.gk = loadSealObject(() => new seal.GaloisKeys(), ctx.context, env.parts[next], 'Galois keys')
      }
      return new HeEvaluator(
        runtime,
        meta.preset,
        ctx,
        { pk: loaded.pk, rk: loaded.rk, gk: loaded.gk, steps: meta.steps },
        { keyId, paramsHash, bundle },
      )
    } catch (e) {
      loaded.pk?.delete()
      loaded.rk?.delete()
      loaded.gk?.delete()
      if (!built) {
        ctx.context.delete()
        ctx.parms.delete()
      }
      throw e
    }
  }

  /** Size of the SEAL WebAssembly heap in bytes (for leak checks and monitoring). */
  heapBytes(): number {
    return this.#runtime.heapBytes()
  }

  /** Encrypts `values` with the public key, packed `slots` per ciphertext. */
  encrypt(values: HeInput): HeVector {
    this.#alive()
    if (values.length === 0) throw badInput('cannot encrypt an empty vector')
    const cts: Ciphertext[] = []
    try {
      for (let off = 0; off < values.length; off += this.slots) {
        const pt = this.encodeChunk(values, off, this.#scale)
        try {
          const ct = new this.seal.Ciphertext()
          cts.push(ct)
          this.#encryptor.encrypt(pt, ct)
        } finally {
          pt.delete()
        }
      }
    } catch (e) {
      for (const ct of cts) ct.delete()
      throw e
    }
    return new HeVector(cts, values.length, this.keyId)
  }

  add(a: HeVector, b: HeVector): HeVector {
    this.#pair(a, b)
    return this.#map(a, (ct, i) => this.#binary(ct, b.ciphertexts[i], 'add'))
  }

  sub(a: HeVector, b: HeVector): HeVector {
    this.#pair(a, b)
    return this.#map(a, (ct, i) => this.#binary(ct, b.ciphertexts[i], 'sub'))
  }

  /** Sum of many vectors of the same length (e.g. encrypted gradients from several parties or rows). */
  sum(vectors: readonly HeVector[]): HeVector {
    if (vectors.length === 0) throw badInput('sum of no vectors')
    for (const v of vectors) this.#pair(vectors[0], v)
    return this.#map(vectors[0], (_, i) => {
      let acc = vectors[0].ciphertexts[i].clone()
      for (let k = 1; k < vectors.length; k++) {
        const next = this.#binary(acc, vectors[k].ciphertexts[i], 'add')
        acc.delete()
        acc = next
      }
      return acc
    })
  }

  addPlain(a: HeVector, values: HeInput): HeVector {
    this.#own(a)
    sameLength(a.length, values.length)
    return this.#map(a, (ct, i) => {
      const pt = this.encodeChunk(values, i * this.slots, this.#scale, ct)
      try {
        const out = new this.seal.Ciphertext()
        this.#evaluator.addPlain(ct, pt, out)
        return out
      } finally {
        pt.delete()
      }
    })
  }

  /**
   * Slot-wise product with a plaintext vector of the same length, or with one number (broadcast). CKKS consumes
   * one level; BFV values must be integers.
   */
  multiplyPlain(a: HeVector, values: HeInput | number | bigint): HeVector {
    this.#own(a)
    const broadcast = typeof values === 'number' || typeof values === 'bigint'
    if (!broadcast) sameLength(a.length, values.length)
    return this.#map(a, (ct, i) => {
      const size = ct.coeffModulusSize()
      if (this.scheme === 'ckks' && size < 2) throw depthExhausted(this.preset)
      const scale = this.scheme === 'ckks' ? this.#lastPrime.get(size)! : 1
      const src = broadcast ? new Array<number | bigint>(this.slots).fill(values) : values
      const pt = this.encodeChunk(src as HeInput, broadcast ? 0 : i * this.slots, scale, ct)
      try {
        if (pt.isZero()) return this.#zero(this.scheme === 'ckks' ? size - 1 : size)
        const out = new this.seal.Ciphertext()
        this.#evaluator.multiplyPlain(ct, pt, out)
        if (this.scheme === 'ckks') this.#evaluator.rescaleToNextInplace(out)
        return out
      } finally {
        pt.delete()
      }
    })
  }

  /** Slot-wise product of two ciphertexts, relinearised (CKKS: and rescaled, one level consumed). */
  multiply(a: HeVector, b: HeVector): HeVector {
    this.#pair(a, b)
    if (!this.#relin) {
      throw new SyndicateError(
        'ERR_HE_MISSING_RELIN_KEYS',
        'this key bundle has no relinearisation keys; the key owner must generate them (relin: true)',
        { keyId: this.keyId },
      )
    }
    const rk = this.#relin
    return this.#map(a, (ct, i) => {
      if (
        this.scheme === 'ckks' &&
        Math.min(ct.coeffModulusSize(), b.ciphertexts[i].coeffModulusSize()) < 2
      ) {
        throw depthExhausted(this.preset)
      }
      const out = this.#binary(ct, b.ciphertexts[i], 'multiply')
      try {
        this.#evaluator.relinearizeInplace(out, rk)
        if (this.scheme === 'ckks') {
          this.#evaluator.rescaleToNextInplace(out)
          out.setScale(this.#scale)
        }
        return out
      } catch (e) {
        out.delete()
        throw e
      }
    })
  }

  /**
   * Rotates each ciphertext's slots left by `step` (negative: right). CKKS: a cyclic rotation of the chunk.
   * BFV: slots form two rows of slots/2 and each row rotates separately. Needs the Galois key for `step`.
   */
  rotate(a: HeVector, step: number): HeVector {
    this.#own(a)
    if (!Number.isInteger(step) || step === 0)
      throw badInput(`rotation step must be a non-zero integer, got ${step}`)
    const gk = this.#galoisFor([step])
    return this.#map(a, (ct) => this.#rotateOne(ct, step, gk))
  }

  /** BFV only: swaps the two rows of slots (Galois step 0). */
  swapRows(a: HeVector): HeVector {
    this.#own(a)
    if (this.scheme !== 'bfv') throw schemeMismatch('swapRows', 'bfv', this.scheme)
    const gk = this.#galoisFor([0])
    return this.#map(a, (ct) => this.#rotateOne(ct, 0, gk))
  }

  /**
   * The sum of all values of `a`, as a length-1 vector (every slot of its ciphertext holds the sum). Adds the
   * chunks, then log2(row) rotate-and-add steps; needs the keys of `sumSlotsSteps(preset)`. For BFV, the
   * alternative without Galois keys or rotations is `addZeroSumMask` followed by `HeKeyOwner.decryptSum`.
   */
  sumSlots(a: HeVector): HeVector {
    this.#own(a)
    const steps = sumSlotsSteps(this.preset)
    const gk = this.#galoisFor(steps)
    let acc = a.ciphertexts[0].clone()
    try {
      for (let i = 1; i < a.ciphertexts.length; i++)
        acc = this.#replace(acc, this.#binary(acc, a.ciphertexts[i], 'add'))
      for (const s of steps) {
        const rot = this.#rotateOne(acc, s, gk)
        try {
          acc = this.#replace(acc, this.#binary(acc, rot, 'add'))
        } finally {
          rot.delete()
        }
      }
    } catch (e) {
      acc.delete()
      throw e
    }
    return new HeVector([acc], 1, this.keyId)
  }

  /**
   * BFV only: `a` plus a fresh uniform mask whose slots sum to 0 mod t (mask.ts), over every slot of its
   * ciphertexts (the result's length is that full capacity). The key owner decrypting it sees uniformly random
   * slots and learns only their sum (`HeKeyOwner.decryptSum`): a rotation-free way to have the owner learn the
   * sum of an encrypted vector, e.g. a SecureBoost bin sum.
   */
  addZeroSumMask(a: HeVector): HeVector {
    this.#own(a)
    if (this.scheme !== 'bfv') throw schemeMismatch('addZeroSumMask', 'bfv', this.scheme)
    // Mask every slot of every ciphertext, not only the first `length`: after rotations the padding slots may
    // hold data too, and the owner can decrypt them all. The result's length is the full slot capacity.
    const full = a.ciphertexts.length * this.slots
    const widened = new HeVector(
      a.ciphertexts.map((ct) => ct.clone()), // clone() adds a handle to the same SEAL object, not a copy
      full,
      this.keyId,
    )
    try {
      return this.addPlain(widened, zeroSumMask(full, this.plainModulus))
    } finally {
      widened.free()
    }
  }

  /** Serialises a vector for the wire: zstd-compressed SEAL ciphertexts in a keyed envelope. */
  serialize(a: HeVector): Uint8Array {
    this.#own(a)
    const parts = a.ciphertexts.map((ct) => ct.saveToArray(this.seal.ComprModeType.zstd) as Uint8Array)
    return this.envelope(parts, a.length)
  }

  /** @internal Wraps serialised ciphertexts (also the key owner's seeded ones) in the keyed envelope. */
  envelope(parts: Uint8Array[], length: number): Uint8Array {
    return this.envelopeOf(ENVELOPE_KIND.ciphertext, parts, { length })
  }

  /**
   * Parses a vector received from a peer. Refuses (with a SyndicateError, never a crash) bytes that are not an
   * envelope, were made under other parameters (ERR_HE_PARAMS_MISMATCH) or another key (ERR_HE_KEY_MISMATCH),
   * or hold invalid or transparent ciphertexts (ERR_HE_MALFORMED), or would decode to more than
   * `maxDecodedBytes` (ERR_HE_TOO_LARGE; default 256 MiB).
   */
  deserialize(bytes: Uint8Array, maxDecodedBytes = MAX_DECODED_BYTES): HeVector {
    this.#alive()
    const env = this.openOwn(bytes, ENVELOPE_KIND.ciphertext)
    const length = env.meta.length
    const chunks = env.parts.length
    if (
      typeof length !== 'number' ||
      !Number.isSafeInteger(length) ||
      length < 1 ||
      chunks !== Math.ceil(length / this.slots)
    ) {
      throw new SyndicateError('ERR_HE_MALFORMED', 'ciphertext envelope: length and chunk count disagree', {
        length,
        chunks,
      })
    }
    // A fresh two-polynomial ciphertext at the top level is the largest a valid chunk can be.
    const decoded = chunks * 2 * this.#spec.polyDegree * Math.max(...this.#lastPrime.keys()) * 8
    if (decoded > maxDecodedBytes) {
      throw new SyndicateError(
        'ERR_HE_TOO_LARGE',
        `received vector of ${length} values would take ${decoded} bytes, above the limit of ${maxDecodedBytes}; ` +
          'send it in smaller parts or raise maxDecodedBytes',
        { length, decoded, maxDecodedBytes },
      )
    }
    const cts: Ciphertext[] = []
    try {
      for (const part of env.parts) {
        const ct = loadSealObject(() => new this.seal.Ciphertext(), this.context, part, 'ciphertext')
        cts.push(ct)
        this.#checkReceived(ct)
      }
    } catch (e) {
      for (const ct of cts) ct.delete()
      throw e
    }
    return new HeVector(cts, length, this.keyId)
  }

  /**
   * @internal Opens an envelope and checks it was made under this context's parameters
   * (ERR_HE_PARAMS_MISMATCH) and key (ERR_HE_KEY_MISMATCH).
   */
  openOwn(bytes: Uint8Array, kind: EnvelopeKind): Envelope {
    const env = openEnvelope(bytes, kind)
    const what = kind === ENVELOPE_KIND.ciphertext ? 'ciphertext' : 'key material'
    if (!bytesEqual(env.paramsHash, this.#paramsHash)) {
      throw new SyndicateError(
        'ERR_HE_PARAMS_MISMATCH',
        `${what} was made under other HE parameters (sender's preset: ${String(env.meta.preset)}, ours: ` +
          `${this.preset}); both parties must use the job's preset`,
        { preset: this.preset, theirs: env.meta.preset },
      )
    }
    if (!bytesEqual(env.keyId, this.#keyIdBytes)) {
      throw new SyndicateError(
        'ERR_HE_KEY_MISMATCH',
        `${what} is under key ${toHex(env.keyId).slice(0, 16)}…, not this context's key ` +
          `${this.keyId.slice(0, 16)}…; the sender used another party's or job's public key`,
        { expected: this.keyId, got: toHex(env.keyId) },
      )
    }
    return env
  }

  /** @internal A keyed envelope for this context's parameters and key. */
  envelopeOf(kind: EnvelopeKind, parts: Uint8Array[], meta: Record<string, unknown> = {}): Uint8Array {
    return sealEnvelope({
      kind,
      paramsHash: this.#paramsHash,
      keyId: this.#keyIdBytes,
      meta: { preset: this.preset, ...meta },
      parts,
    })
  }

  /** Releases the keys and SEAL objects of this evaluator (vectors must be freed separately). */
  free(): void {
    if (this.#freed) return
    this.#freed = true
    this.#encryptor.delete()
    this.#evaluator.delete()
    this.encoder.delete()
    this.#galois?.delete()
    this.#relin?.delete()
    this.publicKey.delete()
    this.context.delete()
    this.#parms.delete()
  }

  /**
   * @internal Encodes values[off .. off+slots) (zero-padded) as a plaintext; CKKS at `scale` and, when `at` is
   * given, at that ciphertext's level.
   */
  encodeChunk(values: HeInput, off: number, scale: number, at?: Ciphertext): Plaintext {
    const n = Math.min(this.slots, values.length - off)
    const pt = new this.seal.Plaintext()
    try {
      if (this.scheme === 'ckks') {
        const chunk = new Float64Array(this.slots)
        for (let i = 0; i < n; i++) {
          const v = values[off + i]
          if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) >= this.#maxAbs) {
            throw badInput(
              `CKKS values must be finite numbers below ${this.#maxAbs} in magnitude (index ${off + i})`,
            )
          }
          chunk[i] = v
        }
        ;(this.encoder as CKKSEncoder).encode(chunk, scale, pt)
        if (at) {
          const pid = at.parmsId()
          try {
            this.#evaluator.plainModSwitchToInplace(pt, pid)
          } finally {
            pid.delete()
          }
        }
      } else {
        const chunk = new BigInt64Array(this.slots)
        for (let i = 0; i < n; i++) chunk[i] = this.#integer(values[off + i], off + i)
        ;(this.encoder as BatchEncoder).encode(chunk, pt)
      }
      return pt
    } catch (e) {
      pt.delete()
      throw e
    }
  }

  /** @internal Decodes a decrypted chunk (the first `n` slots). */
  decodeChunk(pt: Plaintext, n: number): Float64Array | BigInt64Array {
    if (this.scheme === 'ckks')
      return ((this.encoder as CKKSEncoder).decodeFloat64(pt) as Float64Array).slice(0, n)
    return ((this.encoder as BatchEncoder).decodeBigInt64(pt) as BigInt64Array).slice(0, n)
  }

  /** @internal */
  assertOwn(v: HeVector): void {
    this.#own(v)
  }

  #integer(v: number | bigint, index: number): bigint {
    let b: bigint
    if (typeof v === 'bigint') b = v
    else if (Number.isSafeInteger(v)) b = BigInt(v)
    else throw badInput(`BFV values must be integers (index ${index}: ${v})`)
    if (b > this.#plainHalf || b < -this.#plainHalf) {
      throw badInput(`BFV value at index ${index} exceeds the plaintext modulus range ±${this.#plainHalf}`)
    }
    return b
  }

  #readLevels(): void {
    let cd = this.context.firstContextData()
    for (;;) {
      const parms = cd.parms()
      const mods = parms.coeffModulus()
      const size = mods.size()
      const last = mods.get(size - 1)!
      this.#lastPrime.set(size, Number(last.value()))
      last.delete()
      mods.delete()
      parms.delete()
      const index = cd.chainIndex()
      if (index === 0) {
        cd.delete()
        return
      }
      const next = cd.nextContextData()
      cd.delete()
      cd = next
    }
  }

  #binary(x: Ciphertext, y: Ciphertext, op: 'add' | 'sub' | 'multiply'): Ciphertext {
    // CKKS operands must sit at the same level: switch a copy of the higher one down.
    let xs = x
    let ys = y
    const temp: Ciphertext[] = []
    while (xs.coeffModulusSize() > ys.coeffModulusSize()) {
      xs = this.#modSwitched(xs, temp)
    }
    while (ys.coeffModulusSize() > xs.coeffModulusSize()) {
      ys = this.#modSwitched(ys, temp)
    }
    const out = new this.seal.Ciphertext()
    try {
      this.#evaluator[op](xs, ys, out)
      return out
    } catch (e) {
      out.delete()
      // `node-seal/throws` refuses results that are transparent (e.g. a - a): return a fresh encryption of 0.
      if (sealMessage(e).includes('transparent')) return this.#zero(xs.coeffModulusSize())
      throw e
    } finally {
      for (const t of temp) t.delete()
    }
  }

  #modSwitched(ct: Ciphertext, temp: Ciphertext[]): Ciphertext {
    const out = new this.seal.Ciphertext()
    temp.push(out)
    this.#evaluator.cipherModSwitchToNext(ct, out)
    return out
  }

  #rotateOne(ct: Ciphertext, step: number, gk: GaloisKeys): Ciphertext {
    const out = new this.seal.Ciphertext()
    try {
      if (this.scheme === 'ckks') this.#evaluator.rotateVector(ct, step, gk, out)
      else if (step === 0) this.#evaluator.rotateColumns(ct, gk, out)
      else this.#evaluator.rotateRows(ct, step, gk, out)
      return out
    } catch (e) {
      out.delete()
      throw e
    }
  }

  /** A fresh encryption of zero at the level with `size` primes (CKKS: at the standard scale). */
  #zero(size: number): Ciphertext {
    const ct = new this.seal.Ciphertext()
    try {
      this.#encryptor.encryptZero(ct)
      while (ct.coeffModulusSize() > size) this.#evaluator.cipherModSwitchToNextInplace(ct)
      if (this.scheme === 'ckks') ct.setScale(this.#scale)
      return ct
    } catch (e) {
      ct.delete()
      throw e
    }
  }

  #replace(old: Ciphertext, next: Ciphertext): Ciphertext {
    old.delete()
    return next
  }

  #galoisFor(steps: readonly number[]): GaloisKeys {
    const missing = steps.filter((s) => !this.galoisSteps.includes(s))
    if (!this.#galois || missing.length > 0) {
      throw new SyndicateError(
        'ERR_HE_MISSING_GALOIS_KEY',
        `no Galois key for rotation step(s) ${missing.join(', ')}; ask the key owner to generate them ` +
          '(KeyGenOptions.rotations or sumSlots)',
        { missing, available: this.galoisSteps },
      )
    }
    return this.#galois
  }

  #map(a: HeVector, f: (ct: Ciphertext, i: number) => Ciphertext): HeVector {
    const out: Ciphertext[] = []
    try {
      a.ciphertexts.forEach((ct, i) => {
        out.push(f(ct, i))
      })
    } catch (e) {
      for (const ct of out) ct.delete()
      if (e instanceof SyndicateError) throw e
      throw new SyndicateError('ERR_HE_OPERATION', `HE operation failed: ${sealMessage(e)}`, {}, { cause: e })
    }
    return new HeVector(out, a.length, this.keyId)
  }

  #checkReceived(ct: Ciphertext): void {
    const bad = (why: string) => new SyndicateError('ERR_HE_MALFORMED', `received ciphertext ${why}`, { why })
    if (ct.isTransparent()) throw bad('is transparent (it would reveal its plaintext)')
    if (ct.size() !== 2) throw bad(`has ${ct.size()} polynomials; senders must relinearise`)
    if (ct.scale() !== this.#scale) throw bad(`has scale ${ct.scale()}, expected ${this.#scale}`)
  }

  #alive(): void {
    if (this.#freed)
      throw new SyndicateError('ERR_HE_FREED', 'this HE context was freed', { keyId: this.keyId })
  }

  #own(v: HeVector): void {
    this.#alive()
    if (v.freed) throw new SyndicateError('ERR_HE_FREED', 'this encrypted vector was freed', {})
    if (v.keyId !== this.keyId) {
      throw new SyndicateError(
        'ERR_HE_KEY_MISMATCH',
        `vector is under key ${v.keyId.slice(0, 16)}…, this context holds ${this.keyId.slice(0, 16)}…`,
        { expected: this.keyId, got: v.keyId },
      )
    }
  }

  #pair(a: HeVector, b: HeVector): void {
    this.#own(a)
    this.#own(b)
    sameLength(a.length, b.length)
  }
}

function parseBundleMeta(meta: Record<string, unknown>, parts: number): BundleMeta {
  const bad = (why: string) => new SyndicateError('ERR_HE_MALFORMED', `key bundle: ${why}`, { why })
  const { preset, relin, steps } = meta
  if (!isPresetName(preset)) {
    throw new SyndicateError('ERR_HE_UNKNOWN_PRESET', `key bundle names unknown preset ${String(preset)}`, {
      preset,
    })
  }
  if (typeof relin !== 'boolean') throw bad('relin flag missing')
  const row = HE_PRESETS[preset].polyDegree / 2
  // Galois keys are MiBs each: a bundle may carry at most 64 distinct steps (sumSlots needs <= 14).
  if (
    !Array.isArray(steps) ||
    steps.length > 64 ||
    new Set(steps).size !== steps.length ||
    steps.some((s) => !Number.isInteger(s) || Math.abs(s) >= row)
  ) {
    throw bad('bad rotation steps')
  }
  if (parts !== 1 + (relin ? 1 : 0) + (steps.length > 0 ? 1 : 0)) throw bad('part count does not match meta')
  return { preset, relin, steps: steps as number[] }
}
