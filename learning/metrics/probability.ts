/** Metrics of predicted probabilities: log-loss, Brier score, calibration table. */
import { SyndicateError } from '../../crypto/errors.ts'
import { checkScored, orderByScore } from './validate.ts'

const EPS = 1e-15

/** Mean negative log-likelihood, probabilities clipped to [1e-15, 1 − 1e-15]. */
export function logLoss(y: ArrayLike<number>, p: ArrayLike<number>): number {
  checkScored(y, p, false)
  let s = 0
  for (let i = 0; i < y.length; i++) {
    const q = Math.min(1 - EPS, Math.max(EPS, p[i]))
    s -= y[i] === 1 ? Math.log(q) : Math.log(1 - q)
  }
  return s / y.length
}

/** Mean squared error between probability and outcome. */
export function brier(y: ArrayLike<number>, p: ArrayLike<number>): number {
  checkScored(y, p, false)
  let s = 0
  for (let i = 0; i < y.length; i++) s += (p[i] - y[i]) ** 2
  return s / y.length
}

export interface CalibrationBin {
  count: number
  minScore: number
  maxScore: number
  meanPredicted: number
  observedRate: number
}

/**
 * Calibration by equal-count bins of the predicted probability (ascending). A well calibrated model has
 * meanPredicted ≈ observedRate in every bin. Tied scores are never split across bins.
 */
export function calibrationTable(y: ArrayLike<number>, p: ArrayLike<number>, bins = 10): CalibrationBin[] {
  checkScored(y, p, false)
  if (!(Number.isInteger(bins) && bins >= 1))
    throw new SyndicateError('ERR_METRIC_INPUT', 'bins must be a positive integer.')
  return equalCountGroups(p, bins).map((g) => {
    let sp = 0
    let sy = 0
    for (const i of g) {
      sp += p[i]
      sy += y[i]
    }
    return {
      count: g.length,
      minScore: p[g[0]],
      maxScore: p[g[g.length - 1]],
      meanPredicted: sp / g.length,
      observedRate: sy / g.length,
    }
  })
}

/**
 * Rows grouped into at most `groups` groups of about equal size by ascending score; a run of tied scores
 * stays in one group (so a group can be larger, and there can be fewer groups).
 */
export function equalCountGroups(score: ArrayLike<number>, groups: number): number[][] {
  const order = orderByScore(score)
  const n = order.length
  const out: number[][] = []
  let start = 0
  for (let g = 1; g <= groups && start < n; g++) {
    let end = Math.max(start + 1, Math.round((g * n) / groups))
    if (g === groups) end = n
    while (end < n && score[order[end]] === score[order[end - 1]]) end++
    out.push(Array.from(order.subarray(start, end)))
    start = end
  }
  return out
}
