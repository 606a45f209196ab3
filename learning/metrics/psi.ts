/** Population stability index between a baseline score distribution and a current one. */
import { SyndicateError } from '../../crypto/errors.ts'
import { quantileSorted } from '../data/stats.ts'
import { binOf } from '../preprocess/binning.ts'

export interface PsiResult {
  psi: number
  /** Inner bin edges (from baseline quantiles); bin k holds edges[k-1] < s <= edges[k]. */
  edges: number[]
  expected: number[]
  actual: number[]
}

/** Share floor so that an empty bin does not make the index infinite. */
const FLOOR = 1e-4

/**
 * PSI = Σ_bins (a − e)·ln(a / e), with bins from the baseline's quantiles (default 10). Rule of thumb:
 * < 0.1 stable, 0.1–0.25 some shift, > 0.25 significant shift.
 */
export function psi(baseline: ArrayLike<number>, current: ArrayLike<number>, bins = 10): PsiResult {
  if (baseline.length === 0 || current.length === 0) {
    throw new SyndicateError(
      'ERR_METRIC_INPUT',
      'PSI needs scores in both the baseline and the current sample.',
    )
  }
  const sorted = Float64Array.from(baseline).sort()
  const edges: number[] = []
  for (let k = 1; k < bins; k++) {
    const e = quantileSorted(sorted, k / bins)
    if (edges.length === 0 || e > edges[edges.length - 1]) edges.push(e)
  }
  const share = (s: ArrayLike<number>): number[] => {
    const c = new Array(edges.length + 1).fill(0)
    for (let i = 0; i < s.length; i++) c[binOf(edges, s[i])]++
    return c.map((v) => Math.max(FLOOR, v / s.length))
  }
  const expected = share(baseline)
  const actual = share(current)
  let total = 0
  for (let k = 0; k < expected.length; k++)
    total += (actual[k] - expected[k]) * Math.log(actual[k] / expected[k])
  return { psi: total, edges, expected, actual }
}
