import type { EncryptionParameters, MainModule, SEALContext } from 'node-seal'
import { SyndicateError } from '../errors.ts'

/**
 * Parameter presets, all at 128-bit classical security (SEAL refuses to build a context otherwise). Peers
 * exchange only a preset name, never raw SEAL parameters, so a peer cannot push weak or oversized parameters;
 * both sides rebuild the parameters locally and compare their hash.
 *
 * CKKS (approximate real arithmetic): `scaleBits` sets the fixed-point precision; each multiplication consumes
 * one of the middle primes (`depth` of them). BFV (exact integers mod a batching prime t): slots hold signed
 * integers in (-t/2, t/2); the noise budget allows additions freely and one ciphertext-ciphertext product.
 */
export const HE_PRESETS = {
  /** Small and fast; for tests, short vectors and depth-1 work (precision ~1e-5 relative after a product). */
  'ckks-4096': { scheme: 'ckks', polyDegree: 4096, coeffBits: [38, 30, 40], scaleBits: 30 },
  /** The default for encrypted gradients: 4096 slots, two multiplications. */
  'ckks-8192': { scheme: 'ckks', polyDegree: 8192, coeffBits: [60, 40, 40, 60], scaleBits: 40 },
  /** 8192 slots and six multiplications; ciphertexts and keys are ~4x the N=8192 ones. */
  'ckks-16384': {
    scheme: 'ckks',
    polyDegree: 16384,
    coeffBits: [60, 40, 40, 40, 40, 40, 40, 60],
    scaleBits: 40,
  },
  /** Small BFV with a 20-bit t: integer sums of small counts; for tests. */
  'bfv-4096': { scheme: 'bfv', polyDegree: 4096, plainBits: 20 },
  /** BFV with a 60-bit batching t: fixed-point gradient/hessian sums (see packing.ts), 8192 slots. */
  'bfv-8192': { scheme: 'bfv', polyDegree: 8192, plainBits: 60 },
} as const satisfies Record<string, PresetSpec>

export type HePresetName = keyof typeof HE_PRESETS

export type PresetSpec =
  | { scheme: 'ckks'; polyDegree: number; coeffBits: readonly number[]; scaleBits: number }
  | { scheme: 'bfv'; polyDegree: number; plainBits: number }

export function isPresetName(name: unknown): name is HePresetName {
  return typeof name === 'string' && Object.hasOwn(HE_PRESETS, name)
}

export function presetSpec(name: string): PresetSpec {
  if (!isPresetName(name)) {
    throw new SyndicateError(
      'ERR_HE_UNKNOWN_PRESET',
      `unknown HE preset "${name}"; use one of ${Object.keys(HE_PRESETS).join(', ')}`,
      { preset: name },
    )
  }
  return HE_PRESETS[name]
}

/** Number of values one ciphertext holds: N/2 complex-free slots for CKKS, N integer slots for BFV. */
export function slotCount(name: HePresetName): number {
  const p: PresetSpec = HE_PRESETS[name]
  return p.scheme === 'ckks' ? p.polyDegree / 2 : p.polyDegree
}

/**
 * Rotation steps whose Galois keys `sumSlots` needs: powers of two below the row length (CKKS: N/2 slots in
 * one row; BFV: two rows of N/2, plus step 0 which SEAL maps to the row swap).
 */
export function sumSlotsSteps(name: HePresetName): number[] {
  const p: PresetSpec = HE_PRESETS[name]
  const row = p.polyDegree / 2
  const steps: number[] = []
  for (let s = 1; s < row; s *= 2) steps.push(s)
  if (p.scheme === 'bfv') steps.push(0)
  return steps
}

/** Builds SEAL parameters and a 128-bit-secure context for a preset. The caller owns (and deletes) both. */
export function buildContext(
  seal: MainModule,
  name: HePresetName,
): { parms: EncryptionParameters; context: SEALContext } {
  const p: PresetSpec = HE_PRESETS[name]
  const parms = new seal.EncryptionParameters(
    p.scheme === 'ckks' ? seal.SchemeType.ckks : seal.SchemeType.bfv,
  )
  parms.setPolyModulusDegree(p.polyDegree)
  const coeff =
    p.scheme === 'ckks'
      ? seal.CoeffModulus.Create(p.polyDegree, Int32Array.from(p.coeffBits))
      : seal.CoeffModulus.BFVDefault(p.polyDegree, seal.SecLevelType.tc128)
  parms.setCoeffModulus(coeff)
  coeff.delete()
  if (p.scheme === 'bfv') {
    const t = seal.PlainModulus.Batching(p.polyDegree, p.plainBits)
    parms.setPlainModulus(t)
    t.delete()
  }
  const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128)
  if (!context.parametersSet()) {
    context.delete()
    parms.delete()
    throw new SyndicateError('ERR_HE_PARAMS_INVALID', `SEAL rejected the parameters of preset ${name}`, {
      preset: name,
    })
  }
  return { parms, context }
}
