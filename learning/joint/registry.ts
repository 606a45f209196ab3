import { fedAvgLogisticRegression, fedAvgMlp } from './horizontal/index.ts'
import { federatedGbdt, secureBoost } from './trees/index.ts'
import type { HorizontalAlgorithm, VerticalAlgorithm } from './types.ts'
import { heLogisticRegression, splitNeuralNet, ssLogisticRegression } from './vertical/index.ts'

/** The joint algorithms a node can run, by the `algorithm` name a job spec uses. */
export interface AlgorithmRegistry {
  vertical: Map<string, VerticalAlgorithm>
  horizontal: Map<string, HorizontalAlgorithm>
}

export function createAlgorithmRegistry(
  vertical: VerticalAlgorithm[] = [],
  horizontal: HorizontalAlgorithm[] = [],
): AlgorithmRegistry {
  return {
    vertical: new Map(vertical.map((a) => [a.name, a])),
    horizontal: new Map(horizontal.map((a) => [a.name, a])),
  }
}

/** Every joint algorithm this software ships. */
export function defaultAlgorithms(): AlgorithmRegistry {
  return createAlgorithmRegistry(
    [secureBoost, ssLogisticRegression, heLogisticRegression, splitNeuralNet],
    [fedAvgLogisticRegression, fedAvgMlp, federatedGbdt],
  )
}
