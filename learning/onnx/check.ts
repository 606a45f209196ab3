/**
 * Structural checks of fitted model data before it is exported or scored: a model file can come from another
 * node or from disk, so mismatched lengths or dangling tree indices are reported, never indexed blindly.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import type { Model, Preprocessing, RegressionTree } from '../models/types.ts'

function fail(message: string): never {
  throw new SyndicateError('ERR_MODEL_SHAPE', `${message}; re-export the model from its training job.`)
}

function checkPreprocessing(p: Preprocessing, d: number): void {
  if (p.impute && p.impute.length !== d) fail(`impute has ${p.impute.length} values for ${d} features`)
  if (p.standardize) {
    const { mean, scale } = p.standardize
    if (mean.length !== d || scale.length !== d)
      fail(`standardize has ${mean.length}/${scale.length} values for ${d} features`)
    if (scale.some((s) => s === 0 || !Number.isFinite(s))) fail('standardize has a zero or non-finite scale')
  }
}

function checkTree(t: RegressionTree, d: number, k: number): void {
  const n = t.feature.length
  const lens = [t.threshold, t.left, t.right, t.missingLeft, t.value].map((a) => a.length)
  if (t.cover) lens.push(t.cover.length)
  if (n === 0 || lens.some((l) => l !== n)) fail(`tree ${k} has arrays of different lengths`)
  for (let i = 0; i < n; i++) {
    if (t.feature[i] === -1) continue
    const f = t.feature[i]
    if (!Number.isInteger(f) || f < 0 || f >= d) fail(`tree ${k} node ${i} splits on feature ${f} of ${d}`)
    // Children after their parent rules out cycles, so traversal always reaches a leaf.
    for (const c of [t.left[i], t.right[i]]) {
      if (!Number.isInteger(c) || c <= i || c >= n) fail(`tree ${k} node ${i} has child index ${c}`)
    }
  }
}

export function checkModel(m: Model): void {
  const d = m.features.length
  if (d === 0) fail('the model has no features')
  checkPreprocessing(m.preprocessing, d)
  if (m.kind === 'lr') {
    if (m.weights.length !== d) fail(`LR has ${m.weights.length} weights for ${d} features`)
  } else if (m.kind === 'gbdt') {
    m.trees.forEach((t, k) => {
      checkTree(t, d, k)
    })
  } else {
    let width = d
    m.layers.forEach((l, k) => {
      if (l.weights.length === 0 || l.weights.length !== l.bias.length)
        fail(`MLP layer ${k} has mismatched bias`)
      if (l.weights.some((row) => row.length !== width))
        fail(`MLP layer ${k} expects ${width} inputs per unit`)
      width = l.weights.length
    })
    if (m.layers.length === 0 || width !== 1) fail('MLP must end in a single output unit')
  }
}
