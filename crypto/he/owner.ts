import type { Decryptor, Encryptor, SecretKey } from 'node-seal'
import { SyndicateError } from '../errors.ts'
import { ENVELOPE_KIND, sealEnvelope } from './envelope.ts'
import { type BundleMeta, HeEvaluator } from './evaluator.ts'
import { centre } from './mask.ts'
import {
  badInput,
  hashParams,
  keyIdOf,
  loadSealObject,
  saveSerializable,
  scaleBitsOf,
  schemeMismatch,
} from './material.ts'
import {
  buildContext,
  HE_PRESETS,
  type HePresetName,
  isPresetName,
  type PresetSpec,
  sumSlotsSteps,
} from './params.ts'
import { loadSeal } from './seal.ts'
import type { HeInput, HeVector } from './vector.ts'

export interface KeyGenOptions {
  /** Generate relinearisation keys (needed for ciphertext-ciphertext multiplication). Default true. */
  relin?: boolean
  /** Rotation steps to generate Galois keys for (each key is several MiB: ask only for what you use). */
  rotations?: readonly number[]
  /** Also generate the steps `sumSlots` needs (see `sumSlotsSteps`). Default false. */
  sumSlots?: boolean
}

/** The secret-key holder: key generation, (seeded) encryption, decryption. See evaluator.ts. */
export class HeKeyOwner {
  /** Evaluation (and public-key encryption) in the owner's own process, on the same public material. */
  readonly evaluator: HeEvaluator
  readonly #secretKey: SecretKey
  readonly #decryptor: Decryptor
  readonly #symmetric: Encryptor
  #freed = false

  private constructor(evaluator: HeEvaluator, secretKey: SecretKey) {
    this.evaluator = evaluator
    this.#secretKey = secretKey
    const seal = evaluator.seal
    this.#decryptor = new seal.Decryptor(evaluator.context, secretKey)
    this.#symmetric = new seal.Encryptor(evaluator.context, evaluator.publicKey, secretKey)
  }

  /** Generates a fresh key pair (and the evaluation keys asked for) for `preset`. */
  static async generate(preset: HePresetName, options: KeyGenOptions = {}): Promise<HeKeyOwner> {
    if (!isPresetName(preset)) throw badInput(`unknown HE preset ${String(preset)}`)
    const runtime = await loadSeal()
    const seal = runtime.seal
    const steps = galoisSteps(preset, options)
    const built = buildContext(seal, preset)
    const keygen = new seal.KeyGenerator(built.context)
    let sk: SecretKey | undefined
    let evaluator: HeEvaluator | undefined
    try {
      sk = keygen.secretKey()
      const parts: Uint8Array[] = [saveSerializable(seal, keygen.createPublicKeySerializable())]
      if (options.relin ?? true) parts.push(saveSerializable(seal, keygen.createRelinKeysSerializable()))
      if (steps.length > 0) {
        parts.push(
          saveSerializable(seal, keygen.createGaloisKeysSerializableWithSteps(Int32Array.from(steps))),
        )
      }
      const paramsHash = hashParams(seal, built.parms)
      const meta: BundleMeta = { preset, relin: options.relin ?? true, steps }
      const bundle = sealEnvelope({
        kind: ENVELOPE_KIND.publicKeys,
        paramsHash,
        keyId: keyIdOf(paramsHash, preset, parts[0]),
        meta: { ...meta },
        parts,
      })
      evaluator = HeEvaluator.build(runtime, bundle, built)
      return new HeKeyOwner(evaluator, sk)
    } catch (e) {
      sk?.delete()
      if (evaluator) evaluator.free()
      else {
        built.context.delete()
        built.parms.delete()
      }
      throw e
    } finally {
      keygen.delete()
    }
  }

  /**
   * Rebuilds a key owner from its public bundle and `exportSecretKey()` bytes (e.g. after a restart), checking
   * that the secret key belongs to the bundle's public key (ERR_HE_KEY_MISMATCH otherwise).
   */
  static async restore(bundle: Uint8Array, secret: Uint8Array): Promise<HeKeyOwner> {
    const evaluator = await HeEvaluator.fromBundle(bundle)
    let owner: HeKeyOwner | undefined
    try {
      const env = evaluator.openOwn(secret, ENVELOPE_KIND.secretKey)
      if (env.parts.length !== 1) throw badInput('secret key envelope must hold exactly one part')
      const sk = loadSealObject(
        () => new evaluator.seal.SecretKey(),
        evaluator.context,
        env.parts[0],
        'secret key',
      )
      owner = new HeKeyOwner(evaluator, sk)
      // The fingerprint names the public key only: prove the secret key matches it by a round trip.
      const probe = [3, 1, 4, 1, 5]
      const v = evaluator.encrypt(probe)
      const back = Array.from(
        evaluator.scheme === 'ckks' ? owner.decrypt(v) : owner.decryptIntegers(v),
        Number,
      )
      v.free()
      if (back.some((x, i) => Math.abs(x - probe[i]) > 1e-3)) {
        throw new SyndicateError('ERR_HE_KEY_MISMATCH', 'the secret key does not belong to this key bundle', {
          keyId: evaluator.keyId,
        })
      }
      return owner
    } catch (e) {
      if (owner) owner.free()
      else evaluator.free()
      throw e
    }
  }

  /**
   * The secret key in a keyed envelope, for the owner's own storage across restarts. It decrypts everything
   * encrypted under this key: keep it encrypted at rest and never send it to a peer.
   */
  exportSecretKey(): Uint8Array {
    this.#alive()
    const bytes = this.#secretKey.saveToArray(this.evaluator.seal.ComprModeType.zstd) as Uint8Array
    return this.evaluator.envelopeOf(ENVELOPE_KIND.secretKey, [bytes])
  }

  get keyId(): string {
    return this.evaluator.keyId
  }

  get preset(): HePresetName {
    return this.evaluator.preset
  }

  /** The public material (parameters, public, relinearisation and Galois keys) to send to evaluators. */
  publicBundle(): Uint8Array {
    return this.evaluator.bundle
  }

  encrypt(values: HeInput): HeVector {
    return this.evaluator.encrypt(values)
  }

  /**
   * Encrypts straight to wire bytes with the secret key: SEAL then sends a seed instead of the ciphertext's
   * random half, so the bytes are about half the size of a public-key ciphertext. Same security.
   */
  encryptToBytes(values: HeInput): Uint8Array {
    this.#alive()
    if (values.length === 0) throw badInput('cannot encrypt an empty vector')
    const ev = this.evaluator
    const parts: Uint8Array[] = []
    for (let off = 0; off < values.length; off += ev.slots) {
      const pt = ev.encodeChunk(values, off, ev.scheme === 'ckks' ? 2 ** scaleBitsOf(ev.preset) : 1)
      try {
        parts.push(saveSerializable(ev.seal, this.#symmetric.encryptSymmetricSerializable(pt)))
      } finally {
        pt.delete()
      }
    }
    return ev.envelope(parts, values.length)
  }

  /** Decrypts a CKKS vector. */
  decrypt(v: HeVector): Float64Array {
    if (this.evaluator.scheme !== 'ckks') throw schemeMismatch('decrypt', 'ckks', this.evaluator.scheme)
    return this.#decrypt(v) as Float64Array
  }

  /** Decrypts a BFV vector to signed integers; fails with ERR_HE_NOISE_EXHAUSTED if the noise budget ran out. */
  decryptIntegers(v: HeVector): BigInt64Array {
    if (this.evaluator.scheme !== 'bfv') throw schemeMismatch('decryptIntegers', 'bfv', this.evaluator.scheme)
    return this.#decrypt(v) as BigInt64Array
  }

  /** BFV: the sum of all slots of `v` mod t, centred (the counterpart of `HeEvaluator.addZeroSumMask`). */
  decryptSum(v: HeVector): bigint {
    const t = this.evaluator.plainModulus
    return centre(
      this.decryptIntegers(v).reduce((s, x) => s + x, 0n),
      t,
    )
  }

  /** Remaining BFV noise budget in bits (minimum over the chunks); 0 means decryption would be garbage. */
  noiseBudget(v: HeVector): number {
    if (this.evaluator.scheme !== 'bfv') throw schemeMismatch('noiseBudget', 'bfv', this.evaluator.scheme)
    this.evaluator.assertOwn(v)
    return Math.min(...v.ciphertexts.map((ct) => this.#decryptor.invariantNoiseBudget(ct)))
  }

  free(): void {
    if (this.#freed) return
    this.#freed = true
    this.#decryptor.delete()
    this.#symmetric.delete()
    this.#secretKey.delete()
    this.evaluator.free()
  }

  #decrypt(v: HeVector): Float64Array | BigInt64Array {
    this.#alive()
    const ev = this.evaluator
    ev.assertOwn(v)
    const out = ev.scheme === 'ckks' ? new Float64Array(v.length) : new BigInt64Array(v.length)
    const pt = new ev.seal.Plaintext()
    try {
      v.ciphertexts.forEach((ct, i) => {
        if (ev.scheme === 'bfv' && this.#decryptor.invariantNoiseBudget(ct) <= 0) {
          throw new SyndicateError(
            'ERR_HE_NOISE_EXHAUSTED',
            'BFV noise budget exhausted: the result is unrecoverable; use fewer multiplications or a larger preset',
            { preset: ev.preset },
          )
        }
        this.#decryptor.decrypt(ct, pt)
        const n = Math.min(ev.slots, v.length - i * ev.slots)
        out.set(ev.decodeChunk(pt, n) as Float64Array & BigInt64Array, i * ev.slots)
      })
    } finally {
      pt.delete()
    }
    return out
  }

  #alive(): void {
    if (this.#freed) throw new SyndicateError('ERR_HE_FREED', 'this HE key owner was freed', {})
  }
}

function galoisSteps(preset: HePresetName, options: KeyGenOptions): number[] {
  const spec: PresetSpec = HE_PRESETS[preset]
  const row = spec.polyDegree / 2
  const steps = new Set<number>()
  for (const s of options.rotations ?? []) {
    if (!Number.isInteger(s) || Math.abs(s) >= row || (s === 0 && spec.scheme === 'ckks')) {
      throw badInput(`rotation step ${s} is out of range for ${preset} (|step| < ${row})`)
    }
    steps.add(s)
  }
  if (options.sumSlots) for (const s of sumSlotsSteps(preset)) steps.add(s)
  if (steps.size > 64) throw badInput(`at most 64 rotation steps per key bundle, asked for ${steps.size}`)
  return [...steps]
}
