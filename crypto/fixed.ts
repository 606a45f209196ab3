/**
 * Fixed-point encoding of reals into the ring Z(2^64): x ↦ round(x · 2^f) mod 2^64, read back as a signed
 * (two's-complement) 64-bit integer divided by 2^f.
 *
 * Error bounds: encoding rounds to the nearest multiple of 2^-f, so |decode(encode(x)) - x| <= 2^-(f+1) while
 * |x · 2^f| < 2^53 (exact doubles); beyond that the double's own rounding (relative 2^-53) dominates.
 * Overflow: values with |x| · 2^f >= 2^63 do not fit the signed ring and are rejected (ERR_FIXED_OVERFLOW),
 * as are NaN and infinities; sums and products computed in the ring wrap silently mod 2^64, so protocols keep
 * their intermediate values below 2^63 / 2^f in magnitude (docs/mpc.md gives the budget per operation).
 */
import { SyndicateError } from './errors.ts'

/** A vector (or row-major matrix) of ring elements Z(2^64). */
export type RingVector = BigUint64Array

export const ERR_FIXED_OVERFLOW = 'ERR_FIXED_OVERFLOW'
export const ERR_FIXED_PARAMS = 'ERR_FIXED_PARAMS'

const TWO32 = 4294967296
const LIMIT = 2 ** 63

function checkFracBits(fracBits: number): void {
  if (!Number.isInteger(fracBits) || fracBits < 0 || fracBits > 52) {
    throw new SyndicateError(
      ERR_FIXED_PARAMS,
      `fractional bits must be an integer in [0, 52], got ${fracBits}`,
    )
  }
}

/** Encodes reals as ring elements with `fracBits` fractional bits. */
export function encodeFixed(values: Float64Array | readonly number[], fracBits: number): RingVector {
  checkFracBits(fracBits)
  const scale = 2 ** fracBits
  const out = new BigUint64Array(values.length)
  const w = new Uint32Array(out.buffer)
  for (let i = 0; i < values.length; i++) {
    const s = Math.round(values[i] * scale)
    if (!(Math.abs(s) < LIMIT)) {
      throw new SyndicateError(
        ERR_FIXED_OVERFLOW,
        `value ${values[i]} at index ${i} does not fit 64-bit fixed point with ${fracBits} fractional bits; scale the data down or use fewer fractional bits`,
        { index: i },
      )
    }
    // Split into 32-bit limbs with exact double arithmetic (division by 2^32 and the remainder are exact).
    const hi = Math.floor(s / TWO32)
    w[2 * i] = s - hi * TWO32
    w[2 * i + 1] = hi >>> 0
  }
  return out
}

/** Decodes ring elements (two's-complement) with `fracBits` fractional bits back to reals. */
export function decodeFixed(ring: RingVector, fracBits: number): Float64Array {
  checkFracBits(fracBits)
  const inv = 2 ** -fracBits
  const w = new Uint32Array(ring.buffer, ring.byteOffset, 2 * ring.length)
  const out = new Float64Array(ring.length)
  for (let i = 0; i < ring.length; i++) out[i] = ((w[2 * i + 1] | 0) * TWO32 + w[2 * i]) * inv
  return out
}

/** Encodes one real as a ring scalar (BigInt in [0, 2^64)), e.g. a public constant. */
export function encodeFixedScalar(value: number, fracBits: number): bigint {
  return encodeFixed([value], fracBits)[0]
}
