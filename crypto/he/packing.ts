import { SyndicateError } from '../errors.ts'
import { HE_PRESETS, type HePresetName, type PresetSpec } from './params.ts'

/**
 * Gradient/hessian packing for SecureBoost over BFV (the "GH packing" of FATE's SecureBoost, moved from one
 * Paillier plaintext into one BFV slot): each instance's fixed-point gradient G and hessian H share a slot as
 *   slot = G * 2^hBits + H,   G = round(g * 2^fracBits) (signed),  H = round(h * 2^fracBits) >= 0.
 * Adding slots adds both fields at once, and as long as the hessian sum stays below 2^hBits the fields do not
 * interfere, so one encrypted bin sum yields (sum g, sum h) and halves ciphertexts and traffic. Rounding error:
 * at most count * 2^-(fracBits+1) per sum (typically sqrt(count) * 2^-fracBits / sqrt(12)).
 */
export interface GhPacking {
  fracBits: number
  hBits: number
  gMax: number
  hMax: number
  maxCount: number
}

export interface GhPackingOptions {
  /** The BFV preset whose plaintext modulus must hold the sums. */
  preset: HePresetName
  /** Largest number of instances whose values are ever summed into one slot (e.g. the training rows). */
  maxCount: number
  /** Bounds on |g| and on h (logistic loss: |g| <= 1, 0 <= h <= 0.25). */
  gMax: number
  hMax: number
  /** Fixed-point fraction bits; default: the most that fit. */
  fracBits?: number
}

export function planGhPacking(o: GhPackingOptions): GhPacking {
  const spec: PresetSpec = HE_PRESETS[o.preset]
  if (spec?.scheme !== 'bfv') throw packingError(`GH packing needs a BFV preset, got ${o.preset}`)
  if (!(Number.isSafeInteger(o.maxCount) && o.maxCount > 0 && o.gMax > 0 && o.hMax > 0)) {
    throw packingError('maxCount, gMax and hMax must be positive')
  }
  // Signed slot values are centred in (-t/2, t/2) and t > 2^(plainBits-1): sums must stay below 2^(plainBits-2).
  const room = spec.plainBits - 2
  const bitsFor = (max: number, frac: number) => Math.ceil(Math.log2(o.maxCount * max * 2 ** frac + 1))
  const fits = (frac: number) => bitsFor(o.gMax, frac) + bitsFor(o.hMax, frac) <= room
  let fracBits = o.fracBits
  if (fracBits === undefined) {
    fracBits = 0
    while (fits(fracBits + 1)) fracBits++
  }
  if (!Number.isInteger(fracBits) || fracBits < 0 || !fits(fracBits)) {
    throw packingError(
      `cannot pack ${o.maxCount} instances with ${fracBits} fraction bits into ${o.preset}; use fewer fraction bits`,
    )
  }
  return { fracBits, hBits: bitsFor(o.hMax, fracBits), gMax: o.gMax, hMax: o.hMax, maxCount: o.maxCount }
}

/** Packs per-instance (g, h) into slot integers. */
export function packGh(g: ArrayLike<number>, h: ArrayLike<number>, p: GhPacking): BigInt64Array {
  if (g.length !== h.length) throw packingError(`g and h lengths differ (${g.length} vs ${h.length})`)
  if (g.length > p.maxCount) throw packingError(`more instances (${g.length}) than planned (${p.maxCount})`)
  const out = new BigInt64Array(g.length)
  const unit = 2 ** p.fracBits
  const shift = BigInt(p.hBits)
  for (let i = 0; i < g.length; i++) {
    const gi = g[i]
    const hi = h[i]
    if (!(Math.abs(gi) <= p.gMax) || !(hi >= 0 && hi <= p.hMax)) {
      throw packingError(`instance ${i}: g=${gi}, h=${hi} outside the planned bounds`)
    }
    out[i] = (BigInt(Math.round(gi * unit)) << shift) + BigInt(Math.round(hi * unit))
  }
  return out
}

/** Splits a decrypted slot sum back into (sum g, sum h). */
export function unpackGhSum(total: bigint, p: GhPacking): { g: number; h: number } {
  const shift = BigInt(p.hBits)
  const hInt = total & ((1n << shift) - 1n) // BigInt `&` is two's complement: correct for negative totals
  const gInt = (total - hInt) >> shift
  const unit = 2 ** p.fracBits
  return { g: Number(gInt) / unit, h: Number(hInt) / unit }
}

function packingError(message: string): SyndicateError {
  return new SyndicateError('ERR_HE_PACKING', message, {})
}
