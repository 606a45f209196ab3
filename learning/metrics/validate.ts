import { SyndicateError } from '../../crypto/errors.ts'

/** Scores and labels must pair up, and a ranking metric needs both classes present. */
export function checkScored(y: ArrayLike<number>, score: ArrayLike<number>, needBothClasses: boolean): void {
  if (y.length !== score.length) {
    throw new SyndicateError(
      'ERR_METRIC_INPUT',
      `Got ${y.length} labels but ${score.length} scores; they must pair up.`,
    )
  }
  if (y.length === 0) throw new SyndicateError('ERR_METRIC_INPUT', 'No rows to evaluate.')
  let pos = 0
  for (let i = 0; i < y.length; i++) {
    if (y[i] !== 0 && y[i] !== 1)
      throw new SyndicateError('ERR_METRIC_INPUT', `Label ${i} is ${y[i]}; labels are 0/1.`)
    if (Number.isNaN(score[i])) throw new SyndicateError('ERR_METRIC_INPUT', `Score ${i} is NaN.`)
    pos += y[i]
  }
  if (needBothClasses && (pos === 0 || pos === y.length)) {
    throw new SyndicateError(
      'ERR_METRIC_INPUT',
      'AUC and KS need both good (0) and bad (1) customers in the evaluation set.',
    )
  }
}

/** Row indices sorted by score ascending. */
export function orderByScore(score: ArrayLike<number>): Uint32Array {
  const idx = new Uint32Array(score.length)
  for (let i = 0; i < idx.length; i++) idx[i] = i
  return idx.sort((a, b) => score[a] - score[b])
}
