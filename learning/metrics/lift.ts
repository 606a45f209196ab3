/** Lift and gain by decile: how concentrated the bads are among the highest scores. */
import { equalCountGroups } from './probability.ts'
import { checkScored } from './validate.ts'

export interface LiftRow {
  /** 1 = the highest-scoring group. */
  decile: number
  count: number
  positives: number
  rate: number
  /** rate / overall positive rate. */
  lift: number
  /** Share of all positives captured in this and higher groups. */
  cumulativeGain: number
  cumulativeLift: number
}

export function liftTable(y: ArrayLike<number>, score: ArrayLike<number>, groups = 10): LiftRow[] {
  checkScored(y, score, false)
  const n = y.length
  let totalPos = 0
  for (let i = 0; i < n; i++) totalPos += y[i]
  const base = totalPos / n
  // Highest scores first: group ascending, then reverse.
  const gs = equalCountGroups(score, groups).reverse()
  let cumPos = 0
  let cumCount = 0
  return gs.map((g, k) => {
    let positives = 0
    for (const i of g) positives += y[i]
    cumPos += positives
    cumCount += g.length
    const rate = positives / g.length
    return {
      decile: k + 1,
      count: g.length,
      positives,
      rate,
      lift: base > 0 ? rate / base : Number.NaN,
      cumulativeGain: totalPos > 0 ? cumPos / totalPos : Number.NaN,
      cumulativeLift: base > 0 ? cumPos / cumCount / base : Number.NaN,
    }
  })
}
