/**
 * L2-regularised logistic regression. Objective: mean log-loss + (l2/2)·‖w‖² (bias not penalised); l2 = 1/n
 * equals scikit-learn's default C = 1. Solvers: 'newton' (IRLS with a Cholesky solve: exact, best for the
 * tens of features of a credit file) and 'sgd' (seeded mini-batch SGD, the shape joint training follows).
 */
import { SyndicateError } from '../../crypto/errors.ts'
import { applyPreprocessing, fitPreprocessing, type PreprocessOptions } from '../preprocess/scale.ts'
import { createRng, shuffleInPlace } from '../random.ts'
import { checkTrainingData, sigmoid, solveSpd } from './math.ts'
import type { LogisticRegressionModel } from './types.ts'

export interface LrOptions {
  solver?: 'newton' | 'sgd'
  /** L2 strength on the mean loss; default 1/rows (scikit-learn's C = 1). */
  l2?: number
  /** Newton: iteration cap (default 50) and step tolerance (default 1e-9). */
  maxIter?: number
  tol?: number
  /** SGD: epochs (default 30), batch size (default 256), initial step (default 0.5), seed (default 0). */
  epochs?: number
  batchSize?: number
  learningRate?: number
  seed?: number
  preprocess?: PreprocessOptions
}

export function trainLogisticRegression(
  X: Float64Array,
  y: Uint8Array,
  features: string[],
  opts: LrOptions = {},
): LogisticRegressionModel {
  checkTrainingData(X, y, features)
  const n = y.length
  const d = features.length
  const preprocessing = fitPreprocessing(X, n, d, opts.preprocess)
  const Z = applyPreprocessing(preprocessing, X, n, d)
  const l2 = opts.l2 ?? 1 / n
  if (!(l2 >= 0)) throw new SyndicateError('ERR_LEARN_PARAMS', `l2 must be >= 0, got ${l2}.`)
  const w = opts.solver === 'sgd' ? sgd(Z, y, n, d, l2, opts) : newton(Z, y, n, d, l2, opts)
  return {
    kind: 'lr',
    features: [...features],
    preprocessing,
    weights: Array.from(w.subarray(0, d)),
    bias: w[d],
  }
}

/** IRLS: w ← w − H⁻¹ g with the exact Hessian, parameters [w_1..w_d, bias]. */
function newton(
  Z: Float64Array,
  y: Uint8Array,
  n: number,
  d: number,
  l2: number,
  opts: LrOptions,
): Float64Array {
  const m = d + 1
  const w = new Float64Array(m)
  const maxIter = opts.maxIter ?? 50
  const tol = opts.tol ?? 1e-9
  const g = new Float64Array(m)
  const H = new Float64Array(m * m)
  const z = new Float64Array(m)
  z[d] = 1
  for (let it = 0; it < maxIter; it++) {
    g.fill(0)
    H.fill(0)
    for (let i = 0; i < n; i++) {
      const o = i * d
      let s = w[d]
      for (let j = 0; j < d; j++) {
        z[j] = Z[o + j]
        s += w[j] * z[j]
      }
      const p = sigmoid(s)
      const r = p - y[i]
      const h = p * (1 - p)
      for (let j = 0; j < m; j++) {
        g[j] += r * z[j]
        const hz = h * z[j]
        for (let k = 0; k <= j; k++) H[j * m + k] += hz * z[k]
      }
    }
    for (let j = 0; j < m; j++) {
      g[j] /= n
      for (let k = 0; k <= j; k++) {
        H[j * m + k] /= n
        H[k * m + j] = H[j * m + k]
      }
    }
    for (let j = 0; j < d; j++) {
      g[j] += l2 * w[j]
      H[j * m + j] += l2
    }
    const step = solveSpd(H, g, m)
    let maxStep = 0
    for (let j = 0; j < m; j++) {
      w[j] -= step[j]
      maxStep = Math.max(maxStep, Math.abs(step[j]))
    }
    if (maxStep < tol) break
  }
  return w
}

/** Mini-batch SGD with a 1/√epoch step decay; rows reshuffled each epoch from the seed. */
function sgd(
  Z: Float64Array,
  y: Uint8Array,
  n: number,
  d: number,
  l2: number,
  opts: LrOptions,
): Float64Array {
  const w = new Float64Array(d + 1)
  const epochs = opts.epochs ?? 30
  const batch = opts.batchSize ?? 256
  const lr0 = opts.learningRate ?? 0.5
  const rng = createRng(opts.seed ?? 0)
  const order = new Uint32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  const g = new Float64Array(d + 1)
  for (let e = 0; e < epochs; e++) {
    shuffleInPlace(order, rng)
    const lr = lr0 / Math.sqrt(1 + e)
    for (let b = 0; b < n; b += batch) {
      const end = Math.min(n, b + batch)
      g.fill(0)
      for (let k = b; k < end; k++) {
        const o = order[k] * d
        let s = w[d]
        for (let j = 0; j < d; j++) s += w[j] * Z[o + j]
        const r = sigmoid(s) - y[order[k]]
        for (let j = 0; j < d; j++) g[j] += r * Z[o + j]
        g[d] += r
      }
      const size = end - b
      for (let j = 0; j < d; j++) w[j] -= lr * (g[j] / size + l2 * w[j])
      w[d] -= (lr * g[d]) / size
    }
  }
  return w
}
