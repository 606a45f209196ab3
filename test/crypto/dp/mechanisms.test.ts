import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { clipL2, l2Norm, privatizeGradientSum } from '../../../crypto/dp/clip.ts'
import {
  analyticGaussianSigma,
  classicGaussianSigma,
  gaussianDelta,
  gaussianMechanism,
  laplaceMechanism,
} from '../../../crypto/dp/mechanisms.ts'
import { erfc, normalCdf } from '../../../crypto/dp/normal.ts'
import { gaussianSamples, laplaceSamples, uniformOpen01 } from '../../../crypto/dp/random.ts'

/** Kolmogorov-Smirnov distance between a sample and a CDF. */
function ksDistance(sample: Float64Array, cdf: (x: number) => number): number {
  const s = Float64Array.from(sample).sort()
  let d = 0
  s.forEach((x, i) => {
    const f = cdf(x)
    d = Math.max(d, Math.abs(f - i / s.length), Math.abs(f - (i + 1) / s.length))
  })
  return d
}

// Under the null the KS distance exceeds c/sqrt(n) with probability ~2exp(-2c^2): c = 2.6 gives ~3e-6, so
// these statistical tests of the CSPRNG-driven samplers essentially never flake, yet catch a wrong distribution.
const N = 20_000
const KS_BOUND = 2.6 / Math.sqrt(N)

describe('noise samplers (node:crypto CSPRNG)', () => {
  it('uniform samples lie in the open interval (0, 1) and are uniform', () => {
    const u = Float64Array.from({ length: N }, () => uniformOpen01())
    expect(u.every((x) => x > 0 && x < 1)).toBe(true)
    expect(ksDistance(u, (x) => x)).toBeLessThan(KS_BOUND)
  })

  it('Gaussian samples follow N(0, sigma^2)', () => {
    const sigma = 2.5
    const g = gaussianSamples(N, sigma)
    expect(ksDistance(g, (x) => normalCdf(x / sigma))).toBeLessThan(KS_BOUND)
  })

  it('Laplace samples follow Laplace(0, b)', () => {
    const b = 0.7
    const l = laplaceSamples(N, b)
    const cdf = (x: number) => (x < 0 ? 0.5 * Math.exp(x / b) : 1 - 0.5 * Math.exp(-x / b))
    expect(ksDistance(l, cdf)).toBeLessThan(KS_BOUND)
  })

  it('mechanisms add noise of the calibrated scale around the true value', () => {
    const truth = new Float64Array(N).fill(10)
    const g = gaussianMechanism(truth, 3)
    const mean = g.reduce((s, x) => s + x, 0) / N
    const sd = Math.sqrt(g.reduce((s, x) => s + (x - mean) ** 2, 0) / (N - 1))
    expect(Math.abs(mean - 10)).toBeLessThan((6 * 3) / Math.sqrt(N))
    expect(Math.abs(sd / 3 - 1)).toBeLessThan(0.04)
    const l = laplaceMechanism(truth, 2, 0.5) // b = 4, variance 2 b^2 = 32
    const lmean = l.reduce((s, x) => s + x, 0) / N
    const lvar = l.reduce((s, x) => s + (x - lmean) ** 2, 0) / (N - 1)
    expect(Math.abs(lvar / 32 - 1)).toBeLessThan(0.1)
    expect(() => laplaceMechanism(truth, 1, 0)).toThrow(
      expect.objectContaining({ code: 'ERR_DP_BAD_PARAMETER' }),
    )
  })
})

describe('Gaussian mechanism calibration', () => {
  it('erfc and the normal CDF match reference values', () => {
    expect(erfc(1)).toBeCloseTo(0.157299207050285, 14)
    expect(erfc(3) / 2.209049699858544e-5).toBeCloseTo(1, 12)
    expect(erfc(10) / 2.088487583762545e-45).toBeCloseTo(1, 10)
    expect(normalCdf(-1.5)).toBeCloseTo(0.0668072012688581, 14)
  })

  it('gives the exact delta of Balle & Wang: sigma = 1, epsilon = 1 -> Phi(-1/2) - e Phi(-3/2) = 0.126937', () => {
    // Phi(-0.5) = 0.3085375387, Phi(-1.5) = 0.0668072013: 0.3085375387 - 2.7182818285 * 0.0668072013
    expect(gaussianDelta(1, 1, 1)).toBeCloseTo(0.1269367375, 9)
  })

  it('the analytic sigma meets delta exactly and beats the classic bound', () => {
    for (const [eps, delta] of [
      [0.5, 1e-5],
      [1, 1e-5],
      [4, 1e-8],
    ]) {
      const s = analyticGaussianSigma(eps, delta, 1)
      expect(gaussianDelta(eps, s, 1)).toBeLessThanOrEqual(delta)
      expect(gaussianDelta(eps, s * 0.999, 1)).toBeGreaterThan(delta)
      if (eps < 1) expect(s).toBeLessThan(classicGaussianSigma(eps, delta, 1))
    }
    // Sensitivity scales sigma linearly.
    expect(analyticGaussianSigma(1, 1e-5, 3) / analyticGaussianSigma(1, 1e-5, 1)).toBeCloseTo(3, 6)
    expect(() => classicGaussianSigma(2, 1e-5, 1)).toThrow(
      expect.objectContaining({ code: 'ERR_DP_BAD_PARAMETER' }),
    )
  })
})

describe('per-example clipping', () => {
  it('clips to the norm bound and leaves short vectors alone (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 20 }),
        fc.double({ min: 0.01, max: 10, noNaN: true }),
        (v, c) => {
          const out = clipL2(v, c)
          expect(l2Norm(out)).toBeLessThanOrEqual(c * (1 + 1e-12))
          if (l2Norm(v) <= c) expect(Array.from(out)).toEqual(v)
        },
      ),
    )
  })

  it('sums clipped gradients and adds noise of std noiseMultiplier * clipNorm', () => {
    const grads = [
      [3, 4], // norm 5 -> clipped to (0.6, 0.8)
      [0.1, 0.2],
      [0, -2], // norm 2 -> (0, -1)
    ]
    const exact = privatizeGradientSum(grads, { clipNorm: 1, noiseMultiplier: 0 })
    expect(exact.clipped).toBe(2)
    expect(exact.sum[0]).toBeCloseTo(0.7, 12)
    expect(exact.sum[1]).toBeCloseTo(0, 12)
    const noisy = Array.from(
      { length: 4000 },
      () => privatizeGradientSum(grads, { clipNorm: 1, noiseMultiplier: 2 }).sum[0],
    )
    const mean = noisy.reduce((s, x) => s + x, 0) / noisy.length
    const sd = Math.sqrt(noisy.reduce((s, x) => s + (x - mean) ** 2, 0) / (noisy.length - 1))
    expect(Math.abs(mean - 0.7)).toBeLessThan(0.2)
    expect(Math.abs(sd / 2 - 1)).toBeLessThan(0.08)
    expect(() => privatizeGradientSum([[1, 2], [1]], { clipNorm: 1, noiseMultiplier: 1 })).toThrow(
      expect.objectContaining({ code: 'ERR_DP_BAD_PARAMETER' }),
    )
    expect(privatizeGradientSum([], { clipNorm: 1, noiseMultiplier: 1, dimension: 3 }).sum.length).toBe(3)
  })
})
