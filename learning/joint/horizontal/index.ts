/**
 * Horizontal federated learning (mode `hfl`): parties hold different customers with the same features.
 * FedAvg / FedProx (params.mu > 0) for logistic regression and the MLP with secure aggregation of the updates,
 * securely aggregated global standardisation, and optional local DP-SGD (params.dp). docs/fedavg.md.
 */
import type { HorizontalAlgorithm } from '../types.ts'
import { predictHorizontal, trainHorizontal } from './fedavg.ts'

export const fedAvgLogisticRegression: HorizontalAlgorithm = {
  name: 'fedavg-lr',
  train: (ctx, data) => trainHorizontal('lr', ctx, data),
  predict: predictHorizontal,
}

export const fedAvgMlp: HorizontalAlgorithm = {
  name: 'fedavg-mlp',
  train: (ctx, data) => trainHorizontal('mlp', ctx, data),
  predict: predictHorizontal,
}

export { ERR_HFL_BAD_MESSAGE, ERR_HFL_DROPPED } from './aggregate.ts'
export type { DpSpend } from './dp.ts'
export type { HflModelParams } from './fedavg.ts'
export { ERR_HFL_PARAMS } from './params.ts'
