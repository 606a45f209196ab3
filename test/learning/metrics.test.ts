import { describe, expect, it } from 'vitest'
import {
  auc,
  brier,
  calibrationTable,
  gini,
  ks,
  liftTable,
  logLoss,
  psi,
} from '../../learning/metrics/index.ts'

describe('rank metrics (hand-computed)', () => {
  const y = [0, 0, 1, 1]
  const s = [0.1, 0.4, 0.35, 0.8]

  it('AUC counts concordant pairs', () => {
    // Pairs (bad, good): (.35,.1) yes, (.35,.4) no, (.8,.1) yes, (.8,.4) yes → 3/4.
    expect(auc(y, s)).toBeCloseTo(0.75, 12)
    expect(gini(y, s)).toBeCloseTo(0.5, 12)
  })

  it('AUC counts ties as one half', () => {
    expect(auc([0, 1], [0.5, 0.5])).toBe(0.5)
    // (.5 vs .1) 1, (.5 vs .5) ½, (.9 vs both) 2 → 3.5/4.
    expect(auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9])).toBeCloseTo(0.875, 12)
  })

  it('AUC is 1 for a perfect ranking and 0 for a reversed one', () => {
    expect(auc([0, 0, 1], [1, 2, 3])).toBe(1)
    expect(auc([0, 0, 1], [3, 2, 1])).toBe(0)
  })

  it('KS is the largest gap between the class CDFs, ties moving together', () => {
    expect(ks(y, s)).toBeCloseTo(0.5, 12)
    expect(ks([0, 1], [0.5, 0.5])).toBe(0)
    expect(ks([0, 0, 1, 1], [1, 2, 3, 4])).toBe(1)
  })

  it('rejects unusable input', () => {
    expect(() => auc([1, 1], [0.2, 0.3])).toThrow(/both good/)
    expect(() => auc([0, 1], [0.2])).toThrow(/pair up/)
    expect(() => auc([0, 1], [0.2, Number.NaN])).toThrow(/NaN/)
  })
})

describe('probability metrics (hand-computed)', () => {
  it('log-loss and Brier', () => {
    expect(logLoss([1, 0], [0.8, 0.3])).toBeCloseTo(-(Math.log(0.8) + Math.log(0.7)) / 2, 12)
    expect(brier([1, 0], [0.8, 0.3])).toBeCloseTo(0.065, 12)
    expect(Number.isFinite(logLoss([1], [0]))).toBe(true)
  })

  it('calibration table bins by predicted probability', () => {
    const p = [0.1, 0.1, 0.2, 0.2, 0.8, 0.9]
    const yy = [0, 0, 0, 1, 1, 1]
    const t = calibrationTable(yy, p, 3)
    expect(t.map((b) => b.count)).toEqual([2, 2, 2])
    expect(t[0]).toMatchObject({ meanPredicted: 0.1, observedRate: 0 })
    expect(t[1].observedRate).toBe(0.5)
    expect(t[2].meanPredicted).toBeCloseTo(0.85, 12)
    expect(t[2].observedRate).toBe(1)
  })

  it('calibration never splits tied scores', () => {
    const t = calibrationTable([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.7], 2)
    expect(t.map((b) => b.count)).toEqual([3, 1])
  })
})

describe('lift and gain', () => {
  it('puts the highest scores in decile 1', () => {
    const score = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    const yy = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    const t = liftTable(yy, score, 5)
    expect(t).toHaveLength(5)
    expect(t[0]).toMatchObject({ decile: 1, count: 2, positives: 2, rate: 1, lift: 5, cumulativeGain: 1 })
    expect(t[4]).toMatchObject({ positives: 0, cumulativeGain: 1, cumulativeLift: 1 })
  })
})

describe('population stability index', () => {
  const base = Array.from({ length: 100 }, (_, i) => i)

  it('is 0 for the same distribution', () => {
    expect(psi(base, base).psi).toBeCloseTo(0, 12)
  })

  it('matches a hand computation', () => {
    // Two bins split at the baseline median 49.5: expected [.5, .5], actual [.75, .25].
    const cur = [...Array.from({ length: 75 }, () => 10), ...Array.from({ length: 25 }, () => 90)]
    const r = psi(base, cur, 2)
    expect(r.edges).toEqual([49.5])
    expect(r.psi).toBeCloseTo(0.25 * Math.log(1.5) + 0.25 * Math.log(2), 12)
  })
})
