/**
 * Reason codes: the features that pushed a row's score up the most. learning/ has no reason-code module
 * yet, so this covers logistic regression only, where the attribution is exact: the logit is
 * bias + Σ w_j·z_j over preprocessed (standardised) values z_j, so feature j contributes w_j·z_j relative to
 * an applicant at the training mean. Other kinds return no reasons until learning/explain provides them.
 */
import type { Model } from '../../../learning/models/types.ts'
import { applyPreprocessing } from '../../../learning/preprocess/scale.ts'

export interface Reason {
  feature: string
  /** Contribution to the log-odds of class 1 (positive = towards default). */
  contribution: number
}

/** Top `k` positive contributions for one raw row (model feature order); [] when not available. */
export function reasonCodes(model: Model | undefined, row: ArrayLike<number>, k: number): Reason[] {
  if (!model || model.kind !== 'lr' || k <= 0) return []
  const d = model.features.length
  const z = applyPreprocessing(model.preprocessing, Float64Array.from(row), 1, d)
  const out: Reason[] = []
  for (let j = 0; j < d; j++) {
    const c = model.weights[j] * z[j]
    if (c > 0) out.push({ feature: model.features[j], contribution: c })
  }
  return out.sort((a, b) => b.contribution - a.contribution).slice(0, k)
}
