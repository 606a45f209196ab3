/**
 * Fitted column transforms in the model's `Preprocessing` form: median imputation of NaN, then
 * standardisation (x − mean) / scale. Fitting reads training rows only; applying is what every model does to
 * raw input before its own math.
 */

import { quantileSorted } from '../data/stats.ts'
import type { Preprocessing } from '../models/types.ts'

export interface PreprocessOptions {
  /** Fit median imputation: 'auto' (default) only if the training data has NaN, true always, false never. */
  impute?: boolean | 'auto'
  /** Fit standardisation (default true). */
  standardize?: boolean
}

export function fitPreprocessing(
  X: Float64Array,
  rows: number,
  d: number,
  opts: PreprocessOptions = {},
): Preprocessing {
  const prep: Preprocessing = {}
  const wantImpute = opts.impute ?? 'auto'
  if (wantImpute === true || (wantImpute === 'auto' && X.some((v) => Number.isNaN(v)))) {
    prep.impute = fitMedians(X, rows, d)
  }
  if (opts.standardize ?? true) {
    prep.standardize = fitStandardize(prep.impute ? applyPreprocessing(prep, X, rows, d) : X, rows, d)
  }
  return prep
}

/** Per-column median of the present values (0 for an all-missing column). */
export function fitMedians(X: Float64Array, rows: number, d: number): number[] {
  const out: number[] = []
  const col = new Float64Array(rows)
  for (let j = 0; j < d; j++) {
    let m = 0
    for (let i = 0; i < rows; i++) {
      const v = X[i * d + j]
      if (!Number.isNaN(v)) col[m++] = v
    }
    out.push(m > 0 ? quantileSorted(col.subarray(0, m).sort(), 0.5) : 0)
  }
  return out
}

/** Mean and population standard deviation per column; a constant column gets scale 1 (never divide by 0). */
export function fitStandardize(
  X: Float64Array,
  rows: number,
  d: number,
): { mean: number[]; scale: number[] } {
  const mean = new Float64Array(d)
  const sq = new Float64Array(d)
  for (let i = 0; i < rows; i++) for (let j = 0; j < d; j++) mean[j] += X[i * d + j]
  for (let j = 0; j < d; j++) mean[j] /= rows
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < d; j++) {
      const t = X[i * d + j] - mean[j]
      sq[j] += t * t
    }
  }
  const scale = Array.from(sq, (s) => {
    const sd = Math.sqrt(s / rows)
    return sd > 1e-12 ? sd : 1
  })
  return { mean: Array.from(mean), scale }
}

/** Impute, then standardise; returns a new matrix (the input is never modified). */
export function applyPreprocessing(
  prep: Preprocessing,
  X: Float64Array,
  rows: number,
  d: number,
): Float64Array {
  const out = Float64Array.from(X)
  const { impute, standardize } = prep
  if (!impute && !standardize) return out
  for (let i = 0; i < rows; i++) {
    const o = i * d
    for (let j = 0; j < d; j++) {
      let v = out[o + j]
      if (impute && Number.isNaN(v)) v = impute[j]
      if (standardize) v = (v - standardize.mean[j]) / standardize.scale[j]
      out[o + j] = v
    }
  }
  return out
}
