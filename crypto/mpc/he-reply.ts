/**
 * Plaintext additions for the homomorphic correlation generators, done on serialized ciphertexts.
 *
 * SEAL's BFV `addPlain` (and the Δ·m step of `encrypt`) computes round(q·m/t) with an exact 128-by-64-bit long
 * division per coefficient: ~4 ms per ciphertext in WebAssembly, as much as the rest of an encryption or of a
 * reply. Here Δ·m is added to the first polynomial of the serialized ciphertext with RNS arithmetic in the ring
 * kernel (`ringMulAddMod`), in a fraction of that:
 *
 *  - masking a reply (`maskedReply`): the product ciphertext, still at the top level (162 bits), gets exactly
 *    Δ·R (Δ = ⌊q/t⌋) for the mask R, and only then is switched down to the reply level. Leaving out SEAL's
 *    rounding term (q mod t)·R/t adds less than t ≈ 2^60 to the noise, which the switch divides by 2^86 like
 *    the rest of the computation noise (circuit privacy, see he-triples.ts): what the decrypting party can see
 *    is the switch's own rounding, with no trace of R.
 *  - encrypting (`encryptFast`): SEAL encrypts zero (the rounding loop then runs over one coefficient) and Δ·m
 *    plus the rounding term, computed in floating point (error below 2^9, against a fresh noise of ~2^4 and a
 *    budget of ~2^100), is added to the first polynomial. The noise depends on m only through that error, and
 *    only the owner of m (who holds the key) can ever see noise.
 *
 * The serialized layout is SEAL's, uncompressed: a 16-byte header, the ciphertext's fields, then the data
 * array's element count at byte 105 and its elements (first polynomial first); a seeded ciphertext (symmetric
 * encryption) stores only the first polynomial and the seed of the second. The count is checked before
 * anything is touched.
 */
import type { Ciphertext, Decryptor, Encryptor, MainModule, Plaintext } from 'node-seal'
import { SyndicateError } from '../errors.ts'
import { sealMessage } from '../he/seal.ts'
import type { EvalContext } from './he-params.ts'
import { type Ring, ringMulAddMod } from './ring.ts'
import { ERR_MPC_BAD_MESSAGE } from './wire.ts'

/** One CRT prime t of the plaintext space: its SEAL context and the objects that use it, with this party's keys. */
export interface PrimeContext extends EvalContext {
  encryptor: Encryptor
  decryptor: Decryptor
  /** A plaintext with one zero coefficient: SEAL encrypts it without the per-coefficient rounding loop. */
  zero: Plaintext
}

/**
 * `ct` (coefficient form, top level) plus Δ·R, switched down `switches` levels and serialized: the masked
 * reply. R is the plaintext whose slots are `maskSlots` (values < t); `pt` is scratch space; `ct` is reused.
 */
export function maskedReply(
  seal: MainModule,
  p: EvalContext,
  ct: Ciphertext,
  maskSlots: Ring,
  switches: number,
  pt: Plaintext,
): Uint8Array {
  const n = ct.polyModulusDegree()
  const k = p.top.primes.length
  if (ct.size() !== 2 || ct.coeffModulusSize() !== k || ct.isNttForm()) {
    throw new SyndicateError('ERR_MPC_HE', 'a product ciphertext is not at the top level; abort the job')
  }
  const blob = ct.saveToArray(seal.ComprModeType.none) as Uint8Array
  addScaled(p, blob, 2 * k * n, plainCoeffs(seal, p, maskSlots, pt), false)
  ct.loadFromArray(p.ctx, blob)
  for (let d = 0; d < switches; d++) p.evaluator.cipherModSwitchToNextInplace(ct)
  return ct.saveToArray(seal.ComprModeType.none) as Uint8Array
}

/** A fresh symmetric (seeded, half-size) encryption of the slots `slots` (values < t), serialized. */
export function encryptFast(seal: MainModule, p: PrimeContext, slots: Ring, pt: Plaintext): Uint8Array {
  const ser = p.encryptor.encryptSymmetricSerializable(p.zero)
  let blob: Uint8Array
  try {
    blob = ser.saveToArray(seal.ComprModeType.none) as Uint8Array
  } finally {
    ser.delete()
  }
  const m = plainCoeffs(seal, p, slots, pt)
  addScaled(p, blob, p.top.primes.length * m.length, m, true)
  return blob
}

/** The coefficients of the batch-encoded plaintext of `slots`. */
function plainCoeffs(seal: MainModule, p: EvalContext, slots: Ring, pt: Plaintext): Ring {
  p.encoder.encode(slots, pt)
  const n = pt.coeffCount()
  const blob = pt.saveToArray(seal.ComprModeType.none) as Uint8Array
  const start = blob.byteLength - 8 * n
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength)
  if (start < 8 || view.getBigUint64(start - 8, true) !== BigInt(n)) throw layoutError()
  return new BigUint64Array(blob.slice(start).buffer)
}

/** Byte offset of a serialized ciphertext's data array (its element count sits in the 8 bytes before). */
const CT_DATA_AT = 113

/** Adds Δ·m (and, with `round`, SEAL's rounding term) to the first polynomial of a serialized ciphertext. */
function addScaled(p: EvalContext, blob: Uint8Array, count: number, m: Ring, round: boolean): void {
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength)
  const n = m.length
  const { primes, delta, rho } = p.top
  if (
    blob.byteLength < CT_DATA_AT + 8 * primes.length * n ||
    view.getBigUint64(CT_DATA_AT - 8, true) !== BigInt(count)
  ) {
    throw layoutError()
  }
  const c0 = new BigUint64Array(blob.slice(CT_DATA_AT, CT_DATA_AT + 8 * primes.length * n).buffer)
  let fix: Ring | undefined
  if (round) {
    // ⌊((q mod t)·m + t/2) / t⌋ in doubles, as 32-bit words (error < 2^9: see the module comment)
    fix = new BigUint64Array(n)
    const fw = new Uint32Array(fix.buffer)
    const mw = new Uint32Array(m.buffer, m.byteOffset, 2 * n)
    for (let i = 0; i < n; i++) {
      const f = Math.floor(rho * (mw[2 * i + 1] * 4294967296 + mw[2 * i]) + 0.5)
      const hi = Math.floor(f / 4294967296)
      fw[2 * i] = f - hi * 4294967296
      fw[2 * i + 1] = hi
    }
  }
  for (const [j, q] of primes.entries()) {
    let poly = ringMulAddMod(c0.subarray(j * n, (j + 1) * n), m, q, delta[j])
    if (fix) poly = ringMulAddMod(poly, fix, q, 1n)
    c0.set(poly, j * n)
  }
  blob.set(new Uint8Array(c0.buffer), CT_DATA_AT)
}

function layoutError(): SyndicateError {
  return new SyndicateError('ERR_MPC_HE', 'unexpected SEAL serialization layout; abort the job')
}

/** A peer's unparsable or misshapen homomorphic material: the job must abort, naming the peer. */
export function badMessage(from: string, id: string, detail?: string): SyndicateError {
  return new SyndicateError(
    ERR_MPC_BAD_MESSAGE,
    `party ${from} sent malformed homomorphic material under ${id}${detail ? ` (${detail})` : ''}; abort the job`,
    { from, tag: id },
  )
}

/** SEAL refusing an operation, as a SyndicateError (SyndicateErrors pass through). */
export function heError(err: unknown): SyndicateError {
  return err instanceof SyndicateError
    ? err
    : new SyndicateError('ERR_MPC_HE', `homomorphic evaluation failed: ${sealMessage(err)}; abort the job`)
}
