import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { gaussianDelta } from '../../../crypto/dp/mechanisms.ts'
import {
  DEFAULT_ORDERS,
  dpSgdEpsilon,
  laplaceRdp,
  noiseMultiplierFor,
  RdpAccountant,
  subsampledGaussianRdp,
} from '../../../crypto/dp/rdp.ts'

// The orders TensorFlow Privacy's compute_dp_sgd_privacy used when its docstring example was written.
const TF_ORDERS = [
  1.25,
  1.5,
  1.75,
  2,
  2.25,
  2.5,
  3,
  3.5,
  4,
  4.5,
  ...Array.from({ length: 59 }, (_, i) => 5 + i),
  128,
  256,
  512,
]
const MNIST = { datasetSize: 60_000, batchSize: 256, epochs: 60, delta: 1e-5 }

describe('RDP accountant: published values', () => {
  it('TF Privacy compute_dp_sgd_privacy example: N=60000, batch 256, noise 1.12, 60 epochs -> (2.92, 1e-5)', () => {
    const r = dpSgdEpsilon({ ...MNIST, noiseMultiplier: 1.12, orders: TF_ORDERS, conversion: 'classic' })
    expect(r.steps).toBe(14_063) // ceil(60 * 60000 / 256)
    expect(r.epsilon).toBeCloseTo(2.92, 2)
  })

  it('noise 1.1 in the same setting gives 3.01 (the 2.92 often quoted belongs to noise 1.12)', () => {
    const r = dpSgdEpsilon({ ...MNIST, noiseMultiplier: 1.1, orders: TF_ORDERS, conversion: 'classic' })
    expect(r.epsilon).toBeCloseTo(3.01, 2)
  })

  it('Opacus compute_dp_sgd_privacy example: noise 1.12, alphas [10, 20, 100], 60 * 235 steps -> 2.95', () => {
    const acc = new RdpAccountant([10, 20, 100]).add({
      kind: 'subsampled-gaussian',
      noiseMultiplier: 1.12,
      sampleRate: 256 / 60_000,
      steps: 60 * Math.ceil(60_000 / 256),
    })
    expect(acc.epsilon(1e-5, 'classic').epsilon).toBeCloseTo(2.95, 2)
  })

  it('the improved conversion is never worse than the classic one', () => {
    const acc = new RdpAccountant().add({
      kind: 'subsampled-gaussian',
      noiseMultiplier: 1.12,
      sampleRate: 256 / 60_000,
      steps: 14_063,
    })
    const improved = acc.epsilon(1e-5).epsilon
    expect(improved).toBeLessThan(acc.epsilon(1e-5, 'classic').epsilon)
    expect(improved).toBeGreaterThan(2.3) // and not absurdly small: the RDP-to-DP gain is ~15% here
  })
})

describe('RDP of the subsampled Gaussian: independent checks', () => {
  // A_alpha = E_{z ~ N(0, s^2)} [((1 - q) + q exp((2z - 1) / (2 s^2)))^alpha], integrated numerically.
  function numericRdp(q: number, s: number, alpha: number): number {
    const h = 1e-3
    let total = 0
    for (let z = -40 * s; z <= 40 * s + 1; z += h) {
      const density = Math.exp((-z * z) / (2 * s * s)) / (s * Math.sqrt(2 * Math.PI))
      total += density * (1 - q + q * Math.exp((2 * z - 1) / (2 * s * s))) ** alpha * h
    }
    return Math.log(total) / (alpha - 1)
  }

  it.each([
    [0.1, 1, 3],
    [0.01, 1.1, 18],
    [0.2, 2, 2.5],
    [0.05, 0.8, 7.3],
  ])('q=%f sigma=%f alpha=%f matches numerical integration', (q, s, a) => {
    const got = subsampledGaussianRdp(q, s, a)
    expect(Math.abs(got / numericRdp(q, s, a) - 1)).toBeLessThan(1e-6)
  })

  it('without subsampling it is alpha / (2 sigma^2), and its (eps, delta) bounds the exact Gaussian delta', () => {
    expect(subsampledGaussianRdp(1, 2, 10)).toBe(10 / 8)
    const sigma = 3.9
    const { epsilon } = new RdpAccountant()
      .add({ kind: 'subsampled-gaussian', noiseMultiplier: sigma, sampleRate: 1, steps: 1 })
      .epsilon(1e-5)
    // RDP is an upper bound: the exact delta at the RDP epsilon must not exceed the target.
    expect(gaussianDelta(epsilon, sigma, 1)).toBeLessThanOrEqual(1e-5)
    expect(gaussianDelta(epsilon * 0.85, sigma, 1)).toBeGreaterThan(1e-6) // and it is not loose by much
  })

  it('is continuous across integer and fractional orders', () => {
    for (const a of [2, 5, 18]) {
      const at = subsampledGaussianRdp(0.01, 1.1, a)
      expect(Math.abs(subsampledGaussianRdp(0.01, 1.1, a + 1e-6) - at)).toBeLessThan(1e-5 * at)
    }
  })

  it('epsilon grows with steps and sampling rate and shrinks with noise (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.6, max: 5, noNaN: true }),
        fc.double({ min: 0.001, max: 0.1, noNaN: true }),
        fc.integer({ min: 1, max: 2000 }),
        (sigma, q, steps) => {
          const eps = (s: number, rate: number, t: number) =>
            new RdpAccountant([2, 4, 8, 16, 32, 64])
              .add({ kind: 'subsampled-gaussian', noiseMultiplier: s, sampleRate: rate, steps: t })
              .epsilon(1e-5).epsilon
          const base = eps(sigma, q, steps)
          expect(eps(sigma, q, steps * 2)).toBeGreaterThanOrEqual(base)
          expect(eps(sigma, Math.min(1, q * 2), steps)).toBeGreaterThanOrEqual(base)
          expect(eps(sigma * 1.5, q, steps)).toBeLessThanOrEqual(base)
        },
      ),
      { numRuns: 40 },
    )
  })
})

describe('accountant composition and inversion', () => {
  it('adds RDP across events and restores from its event list', () => {
    const a = new RdpAccountant()
      .add({ kind: 'subsampled-gaussian', noiseMultiplier: 1, sampleRate: 0.01, steps: 100 })
      .add({ kind: 'subsampled-gaussian', noiseMultiplier: 1, sampleRate: 0.01, steps: 50 })
    const b = new RdpAccountant().add({
      kind: 'subsampled-gaussian',
      noiseMultiplier: 1,
      sampleRate: 0.01,
      steps: 150,
    })
    a.rdp().forEach((v, i) => {
      expect(v).toBeCloseTo(b.rdp()[i], 10)
    })
    const restored = new RdpAccountant(a.orders, JSON.parse(JSON.stringify(a.events)))
    expect(restored.epsilon(1e-6)).toEqual(a.epsilon(1e-6))
  })

  it('Laplace RDP tends to the pure epsilon 1/b at large orders', () => {
    expect(laplaceRdp(2, 1e6)).toBeCloseTo(0.5, 4)
    expect(laplaceRdp(2, 2)).toBeLessThan(0.5)
  })

  it('finds the noise multiplier for a target epsilon', () => {
    const setting = { sampleRate: 256 / 60_000, steps: 14_063, delta: 1e-5 }
    const sigma = noiseMultiplierFor({ ...setting, epsilon: 3 })
    const eps = (s: number) =>
      new RdpAccountant()
        .add({
          kind: 'subsampled-gaussian',
          noiseMultiplier: s,
          sampleRate: setting.sampleRate,
          steps: setting.steps,
        })
        .epsilon(1e-5).epsilon
    expect(eps(sigma)).toBeLessThanOrEqual(3)
    expect(eps(sigma * 0.99)).toBeGreaterThan(3)
  })

  it('refuses nonsense parameters with ERR_DP_BAD_PARAMETER', () => {
    const bad = expect.objectContaining({ code: 'ERR_DP_BAD_PARAMETER' })
    expect(() => subsampledGaussianRdp(0.1, 0, 2)).toThrow(bad)
    expect(() => subsampledGaussianRdp(1.5, 1, 2)).toThrow(bad)
    expect(() => new RdpAccountant([1])).toThrow(bad)
    expect(() => new RdpAccountant().epsilon(0)).toThrow(bad)
    expect(() => dpSgdEpsilon({ ...MNIST, batchSize: 70_000, noiseMultiplier: 1 })).toThrow(bad)
    expect(DEFAULT_ORDERS).toContain(1.1)
  })
})
