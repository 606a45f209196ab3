import { brier, logLoss } from './probability.ts'
import { auc, gini, ks } from './ranking.ts'

/** The figures every training job reports for a scored test set (flat, so the governance log can hold them). */
export function scoreMetrics(y: ArrayLike<number>, p: ArrayLike<number>): Record<string, number> {
  return { auc: auc(y, p), ks: ks(y, p), gini: gini(y, p), log_loss: logLoss(y, p), brier: brier(y, p) }
}
