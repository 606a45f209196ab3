import { gaussianSamples } from './random.ts'
import { dpParameterError, requireNonNegative, requirePositive } from './validate.ts'

/**
 * Per-example L2 clipping for gradient methods (DP-SGD, Abadi et al. 2016): scaling each example's gradient to
 * norm <= C bounds one example's influence on the sum, so Gaussian noise of std sigma*C on the sum gives the
 * subsampled Gaussian mechanism with noise multiplier sigma that rdp.ts accounts for.
 */

export function l2Norm(v: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < v.length; i++) s += v[i] * v[i]
  return Math.sqrt(s)
}

/** A copy of `v` scaled down to L2 norm `clipNorm` if it is longer. */
export function clipL2(v: ArrayLike<number>, clipNorm: number): Float64Array {
  requirePositive('clip norm', clipNorm)
  const norm = l2Norm(v)
  const f = norm > clipNorm ? clipNorm / norm : 1
  const out = new Float64Array(v.length)
  for (let i = 0; i < v.length; i++) out[i] = v[i] * f
  return out
}

/**
 * Clips every per-example gradient to `clipNorm`, sums them, and adds N(0, (noiseMultiplier * clipNorm)^2) to
 * each coordinate. Divide the result by the *expected* batch size (sampleRate * datasetSize), not the actual
 * one, which would itself depend on the data under Poisson sampling.
 */
export function privatizeGradientSum(
  perExample: readonly ArrayLike<number>[],
  o: { clipNorm: number; noiseMultiplier: number; dimension?: number },
): { sum: Float64Array; clipped: number } {
  requirePositive('clip norm', o.clipNorm)
  requireNonNegative('noise multiplier', o.noiseMultiplier)
  const dim = o.dimension ?? perExample[0]?.length
  if (dim === undefined) throw dpParameterError('dimension', dim, 'given when the batch is empty')
  const sum = gaussianSamples(dim, o.noiseMultiplier * o.clipNorm)
  let clipped = 0
  for (const g of perExample) {
    if (g.length !== dim) throw dpParameterError('gradient length', g.length, `${dim} like the others`)
    const norm = l2Norm(g)
    if (!Number.isFinite(norm)) throw dpParameterError('gradient', 'non-finite', 'finite')
    const f = norm > o.clipNorm ? o.clipNorm / norm : 1
    if (f < 1) clipped++
    for (let i = 0; i < dim; i++) sum[i] += g[i] * f
  }
  return { sum, clipped }
}
