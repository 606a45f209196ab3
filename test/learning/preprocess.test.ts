import { describe, expect, it } from 'vitest'
import { parseCsv } from '../../learning/data/csv.ts'
import { binMatrix, binOf, fitBinning, quantileEdges } from '../../learning/preprocess/binning.ts'
import { applyOneHot, fitOneHot } from '../../learning/preprocess/onehot.ts'
import { applyPreprocessing, fitPreprocessing } from '../../learning/preprocess/scale.ts'
import { fitWoe, woeOf } from '../../learning/preprocess/woe.ts'

describe('imputation and standardisation', () => {
  const X = Float64Array.from([1, 5, Number.NaN, 5, 3, 5, 7, 5])

  it('imputes the median, then standardises to mean 0 and unit variance', () => {
    const prep = fitPreprocessing(X, 4, 2)
    expect(prep.impute).toEqual([3, 5])
    // Column 0 after imputation: 1, 3, 3, 7 → mean 3.5; column 1 is constant → scale 1.
    expect(prep.standardize!.mean).toEqual([3.5, 5])
    expect(prep.standardize!.scale[1]).toBe(1)
    const Z = applyPreprocessing(prep, X, 4, 2)
    const col0 = [Z[0], Z[2], Z[4], Z[6]]
    expect(col0.reduce((s, v) => s + v, 0)).toBeCloseTo(0, 12)
    expect(col0.reduce((s, v) => s + v * v, 0) / 4).toBeCloseTo(1, 12)
    expect([Z[1], Z[3], Z[5], Z[7]]).toEqual([0, 0, 0, 0])
    expect(Number.isNaN(X[2])).toBe(true)
  })

  it('fits imputation only when needed unless asked', () => {
    const full = Float64Array.from([1, 2, 3, 4])
    expect(fitPreprocessing(full, 2, 2).impute).toBeUndefined()
    expect(fitPreprocessing(full, 2, 2, { impute: true }).impute).toEqual([2, 3])
    expect(fitPreprocessing(full, 2, 2, { standardize: false })).toEqual({})
  })
})

describe('quantile binning', () => {
  it('uses midpoints between distinct values when they fit', () => {
    expect(quantileEdges([3, 1, 2, 2, Number.NaN], 8)).toEqual([1.5, 2.5])
  })

  it('caps the bin count and keeps bins near equal-count', () => {
    const v = Array.from({ length: 1000 }, (_, i) => i)
    const e = quantileEdges(v, 4)
    expect(e).toEqual([249.5, 499.5, 749.5])
    expect(quantileEdges(v, 64).length).toBeLessThanOrEqual(63)
  })

  it('bins values with x <= edge going low and NaN to its own bin', () => {
    expect(binOf([1.5, 2.5], 1.5)).toBe(0)
    expect(binOf([1.5, 2.5], 1.6)).toBe(1)
    expect(binOf([1.5, 2.5], 9)).toBe(2)
    const X = Float64Array.from([1, 10, 2, Number.NaN, 3, 30])
    const b = fitBinning(X, 3, 2, 16)
    expect(Array.from(binMatrix(X, 3, 2, b))).toEqual([0, 0, 1, 2, 2, 1])
  })

  it('rejects an invalid bin count', () => {
    expect(() => quantileEdges([1, 2], 300)).toThrow(/maxBins/)
  })
})

describe('one-hot', () => {
  it('expands categorical columns into indicators and keeps the rest', () => {
    const ds = parseCsv('id,region,age\n1,north,30\n2,south,40\n3,north,50\n', { id: 'id' })
    const spec = fitOneHot(ds)
    expect(spec).toEqual({ columns: [{ name: 'region', codes: [0, 1] }] })
    const out = applyOneHot(ds, spec)
    expect(out.featureNames).toEqual(['region=north', 'region=south', 'age'])
    expect(Array.from(out.X)).toEqual([1, 0, 30, 0, 1, 40, 1, 0, 50])
    // A code unseen in training gives all zeros.
    const test = parseCsv('id,region,age\n9,west,20\n8,south,30\n', { id: 'id', categories: ds.categories })
    expect(test.categories.region).toEqual(['north', 'south', 'west'])
    const t = applyOneHot(test, spec)
    expect(Array.from(t.X)).toEqual([0, 0, 20, 0, 1, 30])
  })
})

describe('weight of evidence', () => {
  it('matches a hand computation', () => {
    // Two bins: x=0 has 3 goods 1 bad, x=1 has 1 good 3 bads.
    const x = [0, 0, 0, 0, 1, 1, 1, 1]
    const y = [0, 0, 0, 1, 0, 1, 1, 1]
    const w = fitWoe(x, y, 4)
    expect(w.edges).toEqual([0.5])
    expect(w.goods).toEqual([3, 1])
    expect(w.bads).toEqual([1, 3])
    // With +0.5 smoothing: %good = 3.5/5, 1.5/5; %bad = 1.5/5, 3.5/5.
    const w0 = Math.log(3.5 / 1.5)
    expect(w.woe[0]).toBeCloseTo(w0, 12)
    expect(w.woe[1]).toBeCloseTo(-w0, 12)
    expect(w.iv).toBeCloseTo(2 * (2 / 5) * w0, 12)
    expect(woeOf(w, 0)).toBe(w.woe[0])
    expect(woeOf(w, Number.NaN)).toBe(0)
  })
})
