import { describe, expect, it } from 'vitest'
import { auc } from '../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../learning/models/gbdt.ts'
import { trainLogisticRegression } from '../../learning/models/lr.ts'
import { sigmoid } from '../../learning/models/math.ts'
import { trainMlp } from '../../learning/models/mlp.ts'
import { predictProba, rawScores, treeLeaf } from '../../learning/models/predict.ts'
import { applyPreprocessing } from '../../learning/preprocess/scale.ts'
import { createRng } from '../../learning/random.ts'

/** Synthetic credit-like data: logit = 1.5·x0 − x1 + 1.5·x2·x3 − 1 (x4 is noise). */
function synth(n: number, seed: number, d = 5) {
  const rng = createRng(seed)
  const X = new Float64Array(n * d)
  const y = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) X[i * d + j] = rng.normal()
    const o = i * d
    const z = 1.5 * X[o] - X[o + 1] + 1.5 * X[o + 2] * X[o + 3] - 1
    y[i] = rng.next() < sigmoid(z) ? 1 : 0
  }
  return { X, y, features: Array.from({ length: d }, (_, j) => `f${j}`) }
}

describe('logistic regression', () => {
  const { X, y, features } = synth(3000, 1)

  it('Newton reaches the optimum: the regularised gradient vanishes', () => {
    const l2 = 0.01
    const m = trainLogisticRegression(X, y, features, { l2 })
    const n = y.length
    const d = features.length
    const Z = applyPreprocessing(m.preprocessing, X, n, d)
    const g = new Float64Array(d + 1)
    for (let i = 0; i < n; i++) {
      let s = m.bias
      for (let j = 0; j < d; j++) s += m.weights[j] * Z[i * d + j]
      const r = sigmoid(s) - y[i]
      for (let j = 0; j < d; j++) g[j] += r * Z[i * d + j]
      g[d] += r
    }
    for (let j = 0; j < d; j++) expect(Math.abs(g[j] / n + l2 * m.weights[j])).toBeLessThan(1e-9)
    expect(Math.abs(g[d] / n)).toBeLessThan(1e-9)
    // Recovers the signs of the true coefficients.
    expect(m.weights[0]).toBeGreaterThan(0.5)
    expect(m.weights[1]).toBeLessThan(-0.3)
  })

  it('SGD approaches the Newton solution and is reproducible', () => {
    const newton = trainLogisticRegression(X, y, features)
    const sgd = trainLogisticRegression(X, y, features, { solver: 'sgd', seed: 3 })
    const pn = predictProba(newton, X, y.length)
    const ps = predictProba(sgd, X, y.length)
    expect(Math.abs(auc(y, pn) - auc(y, ps))).toBeLessThan(0.005)
    expect(sgd).toEqual(trainLogisticRegression(X, y, features, { solver: 'sgd', seed: 3 }))
  })

  it('rejects single-class or inconsistent data', () => {
    expect(() => trainLogisticRegression(X, new Uint8Array(3000), features)).toThrow(/one class/)
    expect(() => trainLogisticRegression(X.subarray(1), y, features)).toThrow(/inconsistent/)
  })
})

describe('histogram GBDT', () => {
  const { X, y, features } = synth(4000, 2)

  it('learns the interaction that LR cannot and scores through raw thresholds', () => {
    const test = synth(2000, 3)
    const gb = trainGbdt(X, y, features, { trees: 60, maxDepth: 3 })
    const lr = trainLogisticRegression(X, y, features)
    const aGb = auc(test.y, predictProba(gb, test.X, 2000))
    const aLr = auc(test.y, predictProba(lr, test.X, 2000))
    expect(aGb).toBeGreaterThan(aLr)
    expect(gb.trees).toHaveLength(60)
    for (const t of gb.trees) {
      expect(t.feature.length).toBeLessThanOrEqual(15)
      expect(t.cover![0]).toBe(4000)
    }
  })

  it('a first stump splits at the true boundary with the Newton leaf values', () => {
    // 200 distinct values fit in 255 bins, so the cut is the exact midpoint 0.5025 between 0.5 and 0.505.
    const n = 200
    const Xs = new Float64Array(n)
    const ys = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      Xs[i] = i / n
      ys[i] = Xs[i] > 0.5 ? 1 : 0
    }
    const m = trainGbdt(Xs, ys, ['x'], { trees: 1, maxDepth: 1, maxBins: 255 })
    const t = m.trees[0]
    expect(t.feature[0]).toBe(0)
    expect(t.threshold[0]).toBeCloseTo(0.5025, 12)
    // Leaf = −η·G/(H+λ); at the base rate p = 99/200, the 101 left rows all have y = 0.
    const p = 99 / 200
    expect(m.baseScore).toBeCloseTo(Math.log(p / (1 - p)), 12)
    expect(t.value[t.left[0]]).toBeCloseTo((-0.1 * (101 * p)) / (101 * p * (1 - p) + 1), 12)
    expect(t.value[t.right[0]]).toBeCloseTo((-0.1 * (99 * (p - 1))) / (99 * p * (1 - p) + 1), 12)
    expect(t.cover).toEqual([200, 101, 99])
  })

  it('learns where missing values go', () => {
    const n = 2000
    const rng = createRng(5)
    const Xm = new Float64Array(n)
    const ym = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      const missing = i % 4 === 0
      Xm[i] = missing ? Number.NaN : rng.next()
      // Missing behaves like a high value.
      ym[i] = missing || Xm[i] > 0.7 ? 1 : 0
    }
    const m = trainGbdt(Xm, ym, ['x'], { trees: 5, maxDepth: 1 })
    const t = m.trees[0]
    expect(t.missingLeft[0]).toBe(false)
    expect(t.value[treeLeaf(t, [Number.NaN])]).toBeGreaterThan(0)
    const p = predictProba(m, Float64Array.from([Number.NaN, 0.1, 0.9]), 3)
    expect(p[0]).toBeGreaterThan(0.5)
    expect(p[1]).toBeLessThan(0.5)
  })

  it('routes training rows through raw thresholds exactly as through the bins (leaf hits = covers)', () => {
    const withNan = Float64Array.from(X, (v, k) => (k % 13 === 0 ? Number.NaN : v))
    const m = trainGbdt(withNan, y, features, { trees: 5, maxDepth: 4, maxBins: 16 })
    for (const t of m.trees) {
      const hits = new Array(t.feature.length).fill(0)
      for (let i = 0; i < y.length; i++) hits[treeLeaf(t, withNan, i * features.length)]++
      t.feature.forEach((f, node) => {
        if (f < 0) expect(hits[node]).toBe(t.cover![node])
      })
    }
  })

  it('is reproducible for a seed, including row and column sampling', () => {
    const opts = { trees: 10, subsample: 0.7, colsample: 0.6, seed: 9 }
    const a = trainGbdt(X, y, features, opts)
    expect(trainGbdt(X, y, features, opts)).toEqual(a)
    expect(trainGbdt(X, y, features, { ...opts, seed: 10 })).not.toEqual(a)
  })

  it('rejects invalid hyper-parameters', () => {
    expect(() => trainGbdt(X, y, features, { maxDepth: 0 })).toThrow(/hyper-parameters/)
    expect(() => trainGbdt(X, y, features, { maxBins: 1 })).toThrow(/maxBins/)
  })
})

describe('MLP', () => {
  const { X, y, features } = synth(3000, 4)

  it('beats a linear model on a non-linear target, reproducibly', () => {
    const test = synth(2000, 6)
    const opts = { hidden: [16, 8], seed: 1, maxEpochs: 40 }
    const m = trainMlp(X, y, features, opts)
    expect(m.layers.map((l) => [l.weights.length, l.weights[0].length])).toEqual([
      [16, 5],
      [8, 16],
      [1, 8],
    ])
    const lr = trainLogisticRegression(X, y, features)
    expect(auc(test.y, predictProba(m, test.X, 2000))).toBeGreaterThan(
      auc(test.y, predictProba(lr, test.X, 2000)),
    )
    expect(trainMlp(X, y, features, opts)).toEqual(m)
    expect(trainMlp(X, y, features, { ...opts, seed: 2 })).not.toEqual(m)
  })

  it('in-process prediction is the sigmoid of a ReLU forward pass', () => {
    const m = trainMlp(X, y, features, { hidden: [4], seed: 1, maxEpochs: 3 })
    const row = X.subarray(0, 5)
    const z = applyPreprocessing(m.preprocessing, row, 1, 5)
    const h = m.layers[0].weights.map((w, o) =>
      Math.max(
        0,
        w.reduce((s, v, i) => s + v * z[i], m.layers[0].bias[o]),
      ),
    )
    const out = m.layers[1].weights[0].reduce((s, v, i) => s + v * h[i], m.layers[1].bias[0])
    expect(rawScores(m, row, 1)[0]).toBeCloseTo(out, 12)
    expect(predictProba(m, row, 1)[0]).toBeCloseTo(sigmoid(out), 12)
  })
})
