/**
 * Differential-privacy accounting for horizontal training: the noise multiplier (given, or the smallest one
 * that meets a target epsilon over the planned steps) and the (epsilon, delta) spent, by the RDP accountant of
 * crypto/dp for the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019).
 */
import { noiseMultiplierFor, RdpAccountant } from '../../../crypto/dp/rdp.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import type { DpParams } from './params.ts'

/** What the node logs and charges to the dataset's budget ledger (`epsilon`, `delta` per dataset). */
export interface DpSpend {
  mode: 'local' | 'central'
  epsilon: number
  delta: number
  noiseMultiplier: number
  clipNorm: number
  sampleRate: number
  steps: number
}

export interface DpPlan {
  noiseMultiplier: number
  sampleRate: number
  /** Steps per epoch: one Poisson-sampled batch of expected size sampleRate · rows each. */
  stepsPerEpoch: number
  spend(steps: number): DpSpend
}

/** `rows` are the rows the sampling runs over: the party's own (local mode) or everybody's (central mode). */
export function planDp(dp: DpParams, rows: number, batchSize: number, epochs: number): DpPlan {
  const sampleRate = batchSize / rows
  if (!(sampleRate < 1)) {
    throw new SyndicateError(
      'ERR_HFL_PARAMS',
      `DP-SGD needs a batch size below the ${rows} rows it samples from (got ${batchSize}); lower batchSize`,
    )
  }
  const stepsPerEpoch = Math.max(1, Math.round(1 / sampleRate))
  const noiseMultiplier =
    dp.noiseMultiplier ??
    noiseMultiplierFor({ epsilon: dp.epsilon!, delta: dp.delta, sampleRate, steps: epochs * stepsPerEpoch })
  return {
    noiseMultiplier,
    sampleRate,
    stepsPerEpoch,
    spend(steps) {
      const { epsilon } = new RdpAccountant()
        .add({ kind: 'subsampled-gaussian', noiseMultiplier, sampleRate, steps })
        .epsilon(dp.delta)
      return {
        mode: dp.mode,
        epsilon,
        delta: dp.delta,
        noiseMultiplier,
        clipNorm: dp.clipNorm,
        sampleRate,
        steps,
      }
    },
  }
}
