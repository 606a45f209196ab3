/** Rank metrics of a score against 0/1 labels (1 = bad / default): AUC, Gini, KS. */
import { checkScored, orderByScore } from './validate.ts'

/**
 * Area under the ROC curve = P(score of a random bad > score of a random good), ties counted one half
 * (Mann–Whitney U with mid-ranks).
 */
export function auc(y: ArrayLike<number>, score: ArrayLike<number>): number {
  checkScored(y, score, true)
  const order = orderByScore(score)
  const n = order.length
  let pos = 0
  let rankSumPos = 0
  for (let i = 0; i < n; ) {
    let j = i
    while (j + 1 < n && score[order[j + 1]] === score[order[i]]) j++
    const midRank = (i + j) / 2 + 1
    for (let k = i; k <= j; k++) {
      if (y[order[k]] === 1) {
        pos++
        rankSumPos += midRank
      }
    }
    i = j + 1
  }
  const neg = n - pos
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg)
}

/** Gini coefficient (accuracy ratio) = 2·AUC − 1. */
export function gini(y: ArrayLike<number>, score: ArrayLike<number>): number {
  return 2 * auc(y, score) - 1
}

/**
 * Kolmogorov–Smirnov statistic: the largest gap between the cumulative score distributions of bads and goods,
 * max over thresholds t of |F_bad(t) − F_good(t)|; tied scores move together.
 */
export function ks(y: ArrayLike<number>, score: ArrayLike<number>): number {
  checkScored(y, score, true)
  const order = orderByScore(score)
  const n = order.length
  let pos = 0
  for (let i = 0; i < n; i++) pos += y[i]
  const neg = n - pos
  let cp = 0
  let cn = 0
  let best = 0
  for (let i = 0; i < n; ) {
    let j = i
    while (j + 1 < n && score[order[j + 1]] === score[order[i]]) j++
    for (let k = i; k <= j; k++) {
      if (y[order[k]] === 1) cp++
      else cn++
    }
    best = Math.max(best, Math.abs(cp / pos - cn / neg))
    i = j + 1
  }
  return best
}
