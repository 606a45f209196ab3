/**
 * Path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, Algorithm 2): exact Shapley values of a tree model
 * where "feature absent" means averaging over both children weighted by the training rows that went each way
 * (the node covers). For every row: Σ φ_j + expected value = raw score, exactly.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import type { GbdtModel, RegressionTree } from '../models/types.ts'

interface PathElem {
  d: number
  z: number
  o: number
  w: number
}

function extend(m: PathElem[], pz: number, po: number, pi: number): PathElem[] {
  const l = m.length
  const out = m.map((e) => ({ ...e }))
  out.push({ d: pi, z: pz, o: po, w: l === 0 ? 1 : 0 })
  for (let i = l - 1; i >= 0; i--) {
    out[i + 1].w += (po * out[i].w * (i + 1)) / (l + 1)
    out[i].w = (pz * out[i].w * (l - i)) / (l + 1)
  }
  return out
}

function unwind(m: PathElem[], i: number): PathElem[] {
  const l = m.length - 1
  const out = m.map((e) => ({ ...e }))
  const { o, z } = m[i]
  let next = out[l].w
  for (let j = l - 1; j >= 0; j--) {
    if (o !== 0) {
      const t = out[j].w
      out[j].w = (next * (l + 1)) / ((j + 1) * o)
      next = t - (out[j].w * z * (l - j)) / (l + 1)
    } else {
      out[j].w = (out[j].w * (l + 1)) / (z * (l - j))
    }
  }
  for (let j = i; j < l; j++) {
    out[j].d = out[j + 1].d
    out[j].z = out[j + 1].z
    out[j].o = out[j + 1].o
  }
  out.pop()
  return out
}

function covers(tree: RegressionTree): number[] {
  if (!tree.cover) {
    throw new SyndicateError(
      'ERR_EXPLAIN_NO_COVER',
      'This tree model has no node covers, which TreeSHAP needs; retrain it with this version of Syndicate.',
    )
  }
  return tree.cover
}

/** Add the SHAP values of one tree for row x (raw values, model feature order) into phi. */
export function treeShap(tree: RegressionTree, x: ArrayLike<number>, phi: Float64Array): void {
  const r = covers(tree)
  const recurse = (j: number, path: PathElem[], pz: number, po: number, pi: number): void => {
    let m = extend(path, pz, po, pi)
    if (tree.feature[j] < 0) {
      for (let i = 1; i < m.length; i++) {
        const w = unwind(m, i).reduce((s, e) => s + e.w, 0)
        phi[m[i].d] += w * (m[i].o - m[i].z) * tree.value[j]
      }
      return
    }
    const f = tree.feature[j]
    const v = x[f]
    const goLeft = Number.isNaN(v) ? tree.missingLeft[j] : v <= tree.threshold[j]
    const hot = goLeft ? tree.left[j] : tree.right[j]
    const cold = goLeft ? tree.right[j] : tree.left[j]
    let iz = 1
    let io = 1
    const k = m.findIndex((e, idx) => idx > 0 && e.d === f)
    if (k > 0) {
      iz = m[k].z
      io = m[k].o
      m = unwind(m, k)
    }
    recurse(hot, m, (iz * r[hot]) / r[j], io, f)
    recurse(cold, m, (iz * r[cold]) / r[j], 0, f)
  }
  recurse(0, [], 1, 1, -1)
}

/** Cover-weighted mean leaf value: the tree's output averaged over its training rows. */
export function treeExpectedValue(tree: RegressionTree): number {
  const r = covers(tree)
  let s = 0
  for (let i = 0; i < tree.feature.length; i++) if (tree.feature[i] < 0) s += tree.value[i] * r[i]
  return s / r[0]
}

/** SHAP values of a GBDT for one raw row, and the expected raw score they are measured from. */
export function gbdtShap(model: GbdtModel, x: ArrayLike<number>): { phi: Float64Array; expected: number } {
  const phi = new Float64Array(model.features.length)
  let expected = model.baseScore
  for (const t of model.trees) {
    treeShap(t, x, phi)
    expected += treeExpectedValue(t)
  }
  return { phi, expected }
}
