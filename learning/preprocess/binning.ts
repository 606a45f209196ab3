/**
 * Quantile binning: per-feature thresholds from the training quantiles, used by the histogram GBDT and by
 * WOE scorecards. Bin k holds edges[k-1] < x <= edges[k]; the last bin is open above; NaN has its own bin.
 * Edges are midpoints between adjacent distinct training values, so no training value sits on a threshold
 * (robust to the float32 rounding of exported models).
 */
import { SyndicateError } from '../../crypto/errors.ts'

/** Index of the first edge >= v (edges ascending): the bin of v. */
export function binOf(edges: ArrayLike<number>, v: number): number {
  let lo = 0
  let hi = edges.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (edges[mid] < v) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Thresholds for one feature: at most maxBins − 1 edges at the values' quantiles (NaN ignored). */
export function quantileEdges(values: ArrayLike<number>, maxBins: number): number[] {
  if (!(Number.isInteger(maxBins) && maxBins >= 2 && maxBins <= 255)) {
    throw new SyndicateError('ERR_LEARN_PARAMS', `maxBins must be an integer in [2, 255], got ${maxBins}.`)
  }
  const sorted = Float64Array.from(values)
    .filter((v) => !Number.isNaN(v))
    .sort()
  const n = sorted.length
  const distinct: number[] = []
  for (let i = 0; i < n; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) distinct.push(sorted[i])
  const mid = (a: number, b: number) => a + (b - a) / 2
  if (distinct.length <= maxBins) {
    return distinct.slice(1).map((v, k) => mid(distinct[k], v))
  }
  const edges: number[] = []
  for (let q = 1; q < maxBins; q++) {
    // Cut after the value at this quantile, halfway to the next distinct value.
    const v = sorted[Math.min(n - 1, Math.ceil((q * n) / maxBins) - 1)]
    let lo = 0
    let hi = distinct.length
    while (lo < hi) {
      const m = (lo + hi) >> 1
      if (distinct[m] <= v) lo = m + 1
      else hi = m
    }
    if (lo >= distinct.length) break
    const e = mid(distinct[lo - 1], distinct[lo])
    if (edges.length === 0 || e > edges[edges.length - 1]) edges.push(e)
  }
  return edges
}

export interface Binning {
  /** edges[j]: ascending thresholds of feature j; feature j has edges[j].length + 1 value bins. */
  edges: number[][]
}

export function fitBinning(X: Float64Array, rows: number, d: number, maxBins: number): Binning {
  const edges: number[][] = []
  const col = new Float64Array(rows)
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < rows; i++) col[i] = X[i * d + j]
    edges.push(quantileEdges(col, maxBins))
  }
  return { edges }
}

/** Row-major bin codes; NaN maps to code edges[j].length + 1 (the missing bin). */
export function binMatrix(X: Float64Array, rows: number, d: number, b: Binning): Uint8Array {
  const out = new Uint8Array(rows * d)
  for (let j = 0; j < d; j++) {
    const e = b.edges[j]
    const missing = e.length + 1
    for (let i = 0; i < rows; i++) {
      const v = X[i * d + j]
      out[i * d + j] = Number.isNaN(v) ? missing : binOf(e, v)
    }
  }
  return out
}
