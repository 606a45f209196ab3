import { normalCdf } from './normal.ts'
import { gaussianSamples, laplaceSamples } from './random.ts'
import { dpParameterError, requireOpenUnit, requirePositive } from './validate.ts'

/**
 * The Gaussian and Laplace mechanisms and their calibration. Sensitivities are the caller's to state (the L2
 * sensitivity for Gaussian noise, L1 for Laplace); per-example clipping (clip.ts) is how gradient methods bound
 * them. Noise comes from the CSPRNG (random.ts; mind its floating-point caveat).
 */

/** values + N(0, sigma^2) per coordinate, as a new array. */
export function gaussianMechanism(values: ArrayLike<number>, sigma: number): Float64Array {
  const noise = gaussianSamples(values.length, sigma)
  for (let i = 0; i < values.length; i++) noise[i] += values[i]
  return noise
}

/** values + Laplace(l1Sensitivity / epsilon) per coordinate: epsilon-DP for a query of that L1 sensitivity. */
export function laplaceMechanism(
  values: ArrayLike<number>,
  l1Sensitivity: number,
  epsilon: number,
): Float64Array {
  requirePositive('epsilon', epsilon)
  const noise = laplaceSamples(values.length, requirePositive('L1 sensitivity', l1Sensitivity) / epsilon)
  for (let i = 0; i < values.length; i++) noise[i] += values[i]
  return noise
}

/**
 * The exact delta of the Gaussian mechanism with noise sigma and L2 sensitivity at a given epsilon
 * (Balle & Wang 2018, Theorem 8): Phi(s/(2 sigma) - eps sigma/s) - e^eps Phi(-s/(2 sigma) - eps sigma/s).
 */
export function gaussianDelta(epsilon: number, sigma: number, l2Sensitivity: number): number {
  requirePositive('sigma', sigma)
  const s = requirePositive('L2 sensitivity', l2Sensitivity)
  const a = s / (2 * sigma)
  const b = (epsilon * sigma) / s
  return Math.max(0, normalCdf(a - b) - Math.exp(epsilon) * normalCdf(-a - b))
}

/**
 * The smallest sigma for which the Gaussian mechanism is (epsilon, delta)-DP ("analytic Gaussian mechanism",
 * Balle & Wang 2018): tight for every epsilon, unlike the classic bound. Bisection to 1e-10 relative.
 */
export function analyticGaussianSigma(epsilon: number, delta: number, l2Sensitivity: number): number {
  requirePositive('epsilon', epsilon)
  requireOpenUnit('delta', delta)
  let lo = 1e-6 * l2Sensitivity
  let hi = l2Sensitivity
  while (gaussianDelta(epsilon, hi, l2Sensitivity) > delta) {
    lo = hi
    hi *= 2
  }
  while (hi - lo > 1e-10 * hi) {
    const mid = (lo + hi) / 2
    if (gaussianDelta(epsilon, mid, l2Sensitivity) > delta) lo = mid
    else hi = mid
  }
  return hi
}

/** The classic calibration sigma = s * sqrt(2 ln(1.25/delta)) / epsilon (Dwork & Roth, Thm A.1; epsilon < 1). */
export function classicGaussianSigma(epsilon: number, delta: number, l2Sensitivity: number): number {
  requireOpenUnit('delta', delta)
  if (!(epsilon > 0 && epsilon < 1))
    throw dpParameterError('epsilon', epsilon, 'in (0, 1) for the classic bound')
  return (requirePositive('L2 sensitivity', l2Sensitivity) * Math.sqrt(2 * Math.log(1.25 / delta))) / epsilon
}
