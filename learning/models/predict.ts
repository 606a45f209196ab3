/**
 * In-process scoring of every model kind: the reference that exported (ONNX) models are compared against.
 * Input rows hold raw values in the model's `features` order; the model's own preprocessing is applied here.
 */
import { applyPreprocessing } from '../preprocess/scale.ts'
import { sigmoid } from './math.ts'
import type {
  DenseLayer,
  GbdtModel,
  LogisticRegressionModel,
  MlpModel,
  Model,
  RegressionTree,
} from './types.ts'

/** Leaf reached by a raw row (x <= threshold goes left; NaN follows missingLeft). */
export function treeLeaf(tree: RegressionTree, x: ArrayLike<number>, offset = 0): number {
  let node = 0
  while (tree.feature[node] >= 0) {
    const v = x[offset + tree.feature[node]]
    const left = Number.isNaN(v) ? tree.missingLeft[node] : v <= tree.threshold[node]
    node = left ? tree.left[node] : tree.right[node]
  }
  return node
}

function gbdtRaw(m: GbdtModel, X: Float64Array, rows: number): Float64Array {
  const d = m.features.length
  const out = new Float64Array(rows).fill(m.baseScore)
  for (const t of m.trees) for (let i = 0; i < rows; i++) out[i] += t.value[treeLeaf(t, X, i * d)]
  return out
}

function lrRaw(m: LogisticRegressionModel, Z: Float64Array, rows: number): Float64Array {
  const d = m.features.length
  const out = new Float64Array(rows)
  for (let i = 0; i < rows; i++) {
    let s = m.bias
    for (let j = 0; j < d; j++) s += m.weights[j] * Z[i * d + j]
    out[i] = s
  }
  return out
}

/** Forward pass of one preprocessed row; returns the pre-activations of every layer (last = the logit). */
export function mlpForward(layers: DenseLayer[], z: ArrayLike<number>): Float64Array[] {
  const pre: Float64Array[] = []
  let a: ArrayLike<number> = z
  layers.forEach((layer, l) => {
    const out = new Float64Array(layer.bias.length)
    for (let o = 0; o < out.length; o++) {
      const w = layer.weights[o]
      let s = layer.bias[o]
      for (let i = 0; i < w.length; i++) s += w[i] * a[i]
      out[o] = s
    }
    pre.push(out)
    a = l < layers.length - 1 ? out.map((v) => Math.max(v, 0)) : out
  })
  return pre
}

function mlpRaw(m: MlpModel, Z: Float64Array, rows: number): Float64Array {
  const d = m.features.length
  const out = new Float64Array(rows)
  for (let i = 0; i < rows; i++) {
    const pre = mlpForward(m.layers, Z.subarray(i * d, i * d + d))
    out[i] = pre[pre.length - 1][0]
  }
  return out
}

/** Raw scores (log-odds of default) for `rows` raw rows, row-major in `model.features` order. */
export function rawScores(model: Model, X: Float64Array, rows: number): Float64Array {
  const { impute, standardize } = model.preprocessing
  const Z =
    impute || standardize ? applyPreprocessing(model.preprocessing, X, rows, model.features.length) : X
  if (model.kind === 'gbdt') return gbdtRaw(model, Z, rows)
  return model.kind === 'lr' ? lrRaw(model, Z, rows) : mlpRaw(model, Z, rows)
}

/** Probability of default for each row. */
export function predictProba(model: Model, X: Float64Array, rows: number): Float64Array {
  return rawScores(model, X, rows).map(sigmoid)
}
