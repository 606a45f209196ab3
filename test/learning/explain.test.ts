import { describe, expect, it } from 'vitest'
import { integratedGradients } from '../../learning/explain/integrated-gradients.ts'
import { createExplainer, topReasons } from '../../learning/explain/reasons.ts'
import { gbdtShap, treeExpectedValue, treeShap } from '../../learning/explain/treeshap.ts'
import { trainGbdt } from '../../learning/models/gbdt.ts'
import { trainLogisticRegression } from '../../learning/models/lr.ts'
import { sigmoid } from '../../learning/models/math.ts'
import { trainMlp } from '../../learning/models/mlp.ts'
import { mlpForward, rawScores } from '../../learning/models/predict.ts'
import type { DenseLayer, RegressionTree } from '../../learning/models/types.ts'
import { createRng } from '../../learning/random.ts'

function synth(n: number, seed: number, d = 4, missingEvery = 0) {
  const rng = createRng(seed)
  const X = new Float64Array(n * d)
  const y = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) X[i * d + j] = rng.normal()
    const o = i * d
    const z = X[o] - 0.8 * X[o + 1] + X[o + 2] * X[o + 3]
    y[i] = rng.next() < sigmoid(z) ? 1 : 0
    if (missingEvery && i % missingEvery === 0) X[o + 3] = Number.NaN
  }
  return { X, y, features: Array.from({ length: d }, (_, j) => `f${j}`) }
}

/** E[f(x) | x_S] under the path-dependent rule: follow x where the feature is known, else cover-weight. */
function condExpectation(t: RegressionTree, x: ArrayLike<number>, S: Set<number>, node = 0): number {
  if (t.feature[node] < 0) return t.value[node]
  const f = t.feature[node]
  if (S.has(f)) {
    const v = x[f]
    const left = Number.isNaN(v) ? t.missingLeft[node] : v <= t.threshold[node]
    return condExpectation(t, x, S, left ? t.left[node] : t.right[node])
  }
  const c = t.cover!
  const l = t.left[node]
  const r = t.right[node]
  return (c[l] * condExpectation(t, x, S, l) + c[r] * condExpectation(t, x, S, r)) / c[node]
}

/** Shapley values by enumerating every coalition. */
function bruteShapley(t: RegressionTree, x: ArrayLike<number>, d: number): number[] {
  const fact = (k: number): number => (k <= 1 ? 1 : k * fact(k - 1))
  const phi = new Array(d).fill(0)
  for (let i = 0; i < d; i++) {
    for (let mask = 0; mask < 1 << d; mask++) {
      if (mask & (1 << i)) continue
      const S = new Set<number>()
      for (let j = 0; j < d; j++) if (mask & (1 << j)) S.add(j)
      const w = (fact(S.size) * fact(d - S.size - 1)) / fact(d)
      const without = condExpectation(t, x, S)
      S.add(i)
      phi[i] += w * (condExpectation(t, x, S) - without)
    }
  }
  return phi
}

describe('TreeSHAP', () => {
  const { X, y, features } = synth(2000, 1, 4, 7)
  const model = trainGbdt(X, y, features, { trees: 15, maxDepth: 4 })

  it('equals brute-force Shapley values of the path-dependent value function, tree by tree', () => {
    for (const t of model.trees.slice(0, 5)) {
      for (const r of [0, 1, 2, 3, 50]) {
        const x = X.subarray(r * 4, r * 4 + 4)
        const phi = new Float64Array(4)
        treeShap(t, x, phi)
        const brute = bruteShapley(t, x, 4)
        for (let j = 0; j < 4; j++) expect(phi[j]).toBeCloseTo(brute[j], 10)
        expect(treeExpectedValue(t)).toBeCloseTo(condExpectation(t, x, new Set()), 12)
      }
    }
  })

  it('sum of SHAP values + expected value = raw score, for rows with and without missing values', () => {
    const raw = rawScores(model, X, 100)
    for (let r = 0; r < 100; r++) {
      const { phi, expected } = gbdtShap(model, X.subarray(r * 4, r * 4 + 4))
      expect(expected + phi.reduce((s, v) => s + v, 0)).toBeCloseTo(raw[r], 10)
    }
  })

  it('gives no credit to a feature the trees never use', () => {
    const t: RegressionTree = {
      feature: [0, -1, -1],
      threshold: [0, 0, 0],
      left: [1, -1, -1],
      right: [2, -1, -1],
      missingLeft: [true, false, false],
      value: [0, -1, 3],
      cover: [4, 3, 1],
    }
    const phi = new Float64Array(2)
    treeShap(t, [1, 5], phi)
    // E = (3·−1 + 1·3)/4 = 0; x goes right → φ0 = 3 − 0.
    expect(Array.from(phi)).toEqual([3, 0])
  })
})

describe('integrated gradients', () => {
  it('is exact for a linear net: attribution = w·(z − b)', () => {
    const layers: DenseLayer[] = [{ weights: [[2, -3, 0.5]], bias: [1] }]
    const a = integratedGradients(layers, [0, 0, 0], [1, 1, 2])
    expect(Array.from(a)).toEqual([2, -3, 1])
  })

  it('completeness and agreement with a fine Riemann sum on a random ReLU net', () => {
    const rng = createRng(3)
    const dense = (nout: number, nin: number): DenseLayer => ({
      weights: Array.from({ length: nout }, () => Array.from({ length: nin }, () => rng.normal())),
      bias: Array.from({ length: nout }, () => rng.normal()),
    })
    const layers = [dense(12, 5), dense(6, 12), dense(1, 6)]
    const f = (x: ArrayLike<number>) => mlpForward(layers, x)[2][0]
    const b = [0.1, -0.2, 0.3, 0, 0.5]
    const z = [1.5, 0.7, -2, 1, -0.4]
    const a = integratedGradients(layers, b, z)
    expect(a.reduce((s, v) => s + v, 0)).toBeCloseTo(f(z) - f(b), 10)
    // Midpoint rule with numerical gradients.
    const steps = 4000
    const approx = new Float64Array(5)
    const h = 1e-6
    for (let k = 0; k < steps; k++) {
      const alpha = (k + 0.5) / steps
      const x = b.map((v, i) => v + alpha * (z[i] - v))
      for (let i = 0; i < 5; i++) {
        const xp = x.slice()
        const xm = x.slice()
        xp[i] += h
        xm[i] -= h
        approx[i] += (((f(xp) - f(xm)) / (2 * h)) * (z[i] - b[i])) / steps
      }
    }
    for (let i = 0; i < 5; i++) expect(a[i]).toBeCloseTo(approx[i], 2)
  })
})

describe('reason codes', () => {
  const { X, y, features } = synth(1500, 2)
  const reference = { X, rows: 1500 }

  it('LR contributions sum to the score difference from the reference mean', () => {
    const m = trainLogisticRegression(X, y, features)
    const explain = createExplainer(m, reference)
    const raw = rawScores(m, X, 1500)
    // For a linear score the reference score is the reference population's mean score.
    const meanRaw = raw.reduce((s, v) => s + v, 0) / 1500
    const e = explain(X.subarray(0, 4))
    expect(e.base).toBeCloseTo(meanRaw, 10)
    expect(e.score).toBeCloseTo(raw[0], 10)
    expect(e.base + e.contributions.reduce((s, v) => s + v, 0)).toBeCloseTo(e.score, 10)
    expect(e.probability).toBeCloseTo(sigmoid(raw[0]), 12)
    expect(e.reasons.length).toBeLessThanOrEqual(4)
  })

  it('GBDT reason codes come from TreeSHAP', () => {
    const m = trainGbdt(X, y, features, { trees: 20 })
    const e = createExplainer(m)(X.subarray(8, 12))
    expect(e.score).toBeCloseTo(rawScores(m, X.subarray(8, 12), 1)[0], 10)
    expect(e.base + e.contributions.reduce((s, v) => s + v, 0)).toBeCloseTo(e.score, 10)
  })

  it('MLP reason codes come from exact integrated gradients', () => {
    const m = trainMlp(X, y, features, { hidden: [8, 4], maxEpochs: 5, seed: 1 })
    const explain = createExplainer(m, reference)
    for (let r = 0; r < 20; r++) {
      const row = X.subarray(r * 4, r * 4 + 4)
      const e = explain(row)
      expect(e.score).toBeCloseTo(rawScores(m, row, 1)[0], 10)
      expect(e.base + e.contributions.reduce((s, v) => s + v, 0)).toBeCloseTo(e.score, 9)
    }
  })

  it('picks the largest factors with their direction', () => {
    const r = topReasons(['a', 'b', 'c', 'd', 'e', 'f'], [0.1, -0.5, 0.3, 0, 0.2, -0.05])
    expect(r).toEqual([
      { feature: 'b', contribution: -0.5, direction: 'decreases_risk' },
      { feature: 'c', contribution: 0.3, direction: 'increases_risk' },
      { feature: 'e', contribution: 0.2, direction: 'increases_risk' },
      { feature: 'a', contribution: 0.1, direction: 'increases_risk' },
    ])
    expect(topReasons(['a', 'b', 'c'], [0.1, -0.5, 0.3], { adverseOnly: true, top: 1 })).toEqual([
      { feature: 'c', contribution: 0.3, direction: 'increases_risk' },
    ])
  })

  it('requires a reference population for LR and MLP', () => {
    const m = trainLogisticRegression(X, y, features)
    expect(() => createExplainer(m)).toThrow(/reference population/)
    expect(() => createExplainer(m, reference)([1, 2])).toThrow(/Expected 4/)
  })
})
