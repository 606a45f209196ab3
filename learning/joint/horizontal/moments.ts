/**
 * Common standardisation for horizontal training: global per-feature means and standard deviations computed
 * under secure aggregation, so every party standardises identically without showing its own moments.
 *
 *  pass 1  Σ 1, Σ x_j, Σ |x_j| over every party's rows   → N, mean μ_j, mean absolute value a_j (public)
 *  pass 2  Σ ((x_j − μ_j) / a_j)²                        → variance σ_j² = a_j² · pass2_j / N (public)
 *
 * Centring on the public global mean and dividing by the public a_j keeps the pass-2 sums near N whatever the
 * units of the data (amounts in the millions or ratios near 0), so a 64-bit fixed-point ring with `fracBits`
 * fractional bits holds them; a_j is itself a global moment. The aggregator learns the sums (and so N and
 * the global moments), every party receives them; nobody learns a party's own count or moments.
 */
import { SyndicateError } from '../../../crypto/errors.ts'
import { type Aggregation, publish, receivePublished, secureSum } from './aggregate.ts'

export interface GlobalMoments {
  rows: number
  /** The parties still active afterwards (a party that dropped during the passes is left out). */
  active: string[]
  mean: number[]
  /** Population standard deviation (1 for a constant column, never 0), as learning/preprocess fitStandardize. */
  scale: number[]
}

/** With `standardize` false only the global row count N is aggregated (mean 0, scale 1 are returned). */
export async function secureMoments(
  a: Aggregation,
  X: Float64Array,
  rows: number,
  d: number,
  standardize: boolean,
): Promise<GlobalMoments> {
  for (let i = 0; i < X.length; i++) {
    if (!Number.isFinite(X[i])) {
      throw new SyndicateError(
        'ERR_HFL_INPUT',
        `row ${Math.floor(i / d)} column ${i % d} is not a finite number; impute missing values before horizontal training`,
      )
    }
  }
  if (!standardize) {
    const s = await secureSum(a, Float64Array.of(rows))
    let n: number
    if (s) {
      n = Math.round(s.sum[0])
      await publish(a, 'count/result', s.contributors, {}, Float64Array.of(n))
    } else {
      n = (await receivePublished(a, 'count/result', 1)).vector[0]
    }
    return { rows: n, active: a.active, mean: new Array(d).fill(0), scale: new Array(d).fill(1) }
  }
  const v1 = new Float64Array(1 + 2 * d)
  v1[0] = rows
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < d; j++) {
      const x = X[i * d + j]
      v1[1 + j] += x
      v1[1 + d + j] += Math.abs(x)
    }
  }
  const s1 = await secureSum(a, v1)
  let first: Float64Array
  if (s1) {
    const n = Math.round(s1.sum[0])
    if (!(n > 0)) throw new SyndicateError('ERR_HFL_INPUT', 'no party has any training rows')
    first = new Float64Array(1 + 2 * d)
    first[0] = n
    for (let j = 0; j < d; j++) {
      first[1 + j] = s1.sum[1 + j] / n
      const mad = s1.sum[1 + d + j] / n
      first[1 + d + j] = mad > 1e-300 ? mad : 1
    }
    await publish(a, 'moments1/result', s1.contributors, {}, first)
  } else {
    first = (await receivePublished(a, 'moments1/result', 1 + 2 * d)).vector
  }
  const n = first[0]
  const mean = Array.from(first.subarray(1, 1 + d))
  const unit = first.subarray(1 + d)

  const v2 = new Float64Array(d)
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < d; j++) {
      const t = (X[i * d + j] - mean[j]) / unit[j]
      v2[j] += t * t
    }
  }
  const s2 = await secureSum(a, v2)
  let scale: Float64Array
  if (s2) {
    // Rows of parties that dropped between the passes are missing from pass 2; their share of N is unknown
    // to everyone, so the variance uses the pass-1 N (documented error) rather than asking again.
    scale = new Float64Array(d)
    for (let j = 0; j < d; j++) {
      const sd = unit[j] * Math.sqrt(Math.max(0, s2.sum[j]) / n)
      scale[j] = sd > 1e-12 ? sd : 1
    }
    await publish(a, 'moments2/result', s2.contributors, {}, scale)
  } else {
    scale = (await receivePublished(a, 'moments2/result', d)).vector
  }
  return { rows: n, active: a.active, mean, scale: Array.from(scale) }
}
