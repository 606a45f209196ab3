/**
 * Reason codes: the factors behind a score, in log-odds units, measured against a reference.
 *   LR:   contribution_j = w_j·(z_j − z̄_j), z̄ = mean preprocessed reference row (exact, additive).
 *   GBDT: path-dependent TreeSHAP; the reference is the training population through the node covers.
 *   MLP:  exact integrated gradients from the mean preprocessed reference row.
 * In every case Σ contributions = score − base, where base is the reference's score (LR, MLP) or the
 * expected training score (GBDT).
 */
import { SyndicateError } from '../../crypto/errors.ts'
import { sigmoid } from '../models/math.ts'
import { mlpForward } from '../models/predict.ts'
import type { Model } from '../models/types.ts'
import { applyPreprocessing } from '../preprocess/scale.ts'
import { integratedGradients } from './integrated-gradients.ts'
import { gbdtShap } from './treeshap.ts'

export type Direction = 'increases_risk' | 'decreases_risk'

export interface ReasonCode {
  feature: string
  /** Change in the log-odds of default attributed to this feature. */
  contribution: number
  direction: Direction
}

export interface Explanation {
  /** Raw score (log-odds of default) of the row. */
  score: number
  probability: number
  /** Raw score the contributions are measured from. */
  base: number
  /** One contribution per model feature, in model feature order. */
  contributions: Float64Array
  /** The top factors by absolute contribution (default four). */
  reasons: ReasonCode[]
}

export interface ExplainOptions {
  /** Number of reason codes (default 4). */
  top?: number
  /** Only factors that raise the risk (adverse-action style), default false. */
  adverseOnly?: boolean
}

/** Reference population: raw rows in the model's feature order (the training set or a recent sample). */
export interface Reference {
  X: Float64Array
  rows: number
}

export type Explainer = (row: ArrayLike<number>, opts?: ExplainOptions) => Explanation

function meanRow(Z: Float64Array, rows: number, d: number): Float64Array {
  const m = new Float64Array(d)
  for (let i = 0; i < rows; i++) for (let j = 0; j < d; j++) m[j] += Z[i * d + j]
  for (let j = 0; j < d; j++) m[j] /= rows
  return m
}

/** Top reason codes from per-feature contributions. */
export function topReasons(
  features: string[],
  contributions: ArrayLike<number>,
  opts: ExplainOptions = {},
): ReasonCode[] {
  const top = opts.top ?? 4
  return Array.from(contributions, (c, j) => ({ j, c }))
    .filter(({ c }) => c !== 0 && (!opts.adverseOnly || c > 0))
    .sort((a, b) => Math.abs(b.c) - Math.abs(a.c) || a.j - b.j)
    .slice(0, top)
    .map(({ j, c }) => ({
      feature: features[j],
      contribution: c,
      direction: c > 0 ? ('increases_risk' as const) : ('decreases_risk' as const),
    }))
}

export function createExplainer(model: Model, reference?: Reference): Explainer {
  const d = model.features.length
  const pre = (row: ArrayLike<number>) => {
    if (row.length !== d) {
      throw new SyndicateError(
        'ERR_EXPLAIN_INPUT',
        `Expected ${d} feature values in model order, got ${row.length}.`,
      )
    }
    return applyPreprocessing(model.preprocessing, Float64Array.from(row), 1, d)
  }
  const finish = (
    score: number,
    base: number,
    contributions: Float64Array,
    opts?: ExplainOptions,
  ): Explanation => ({
    score,
    probability: sigmoid(score),
    base,
    contributions,
    reasons: topReasons(model.features, contributions, opts),
  })

  if (model.kind === 'gbdt') {
    return (row, opts) => {
      const { phi, expected } = gbdtShap(model, pre(row))
      return finish(expected + phi.reduce((s, v) => s + v, 0), expected, phi, opts)
    }
  }
  if (!reference || reference.rows < 1 || reference.X.length !== reference.rows * d) {
    throw new SyndicateError(
      'ERR_EXPLAIN_REFERENCE',
      `Reason codes for ${model.kind} models are measured against a reference population: pass rows × ${d} raw values in model feature order.`,
    )
  }
  const ref = meanRow(
    applyPreprocessing(model.preprocessing, reference.X, reference.rows, d),
    reference.rows,
    d,
  )
  if (model.kind === 'lr') {
    let base = model.bias
    for (let j = 0; j < d; j++) base += model.weights[j] * ref[j]
    return (row, opts) => {
      const z = pre(row)
      const c = new Float64Array(d)
      let score = model.bias
      for (let j = 0; j < d; j++) {
        c[j] = model.weights[j] * (z[j] - ref[j])
        score += model.weights[j] * z[j]
      }
      return finish(score, base, c, opts)
    }
  }
  const logit = (z: ArrayLike<number>) => {
    const out = mlpForward(model.layers, z)
    return out[out.length - 1][0]
  }
  const base = logit(ref)
  return (row, opts) => {
    const z = pre(row)
    return finish(logit(z), base, integratedGradients(model.layers, ref, z), opts)
  }
}
