/** Hyper-parameters of the tree algorithms, validated from the job spec (unknown keys are an error). */
import { z } from 'zod'
import { parseParams, positive, positiveInt } from '../vertical/params.ts'

export interface TreeParams {
  trees: number
  maxDepth: number
  learningRate: number
  lambda: number
  gamma: number
  minChildWeight: number
  maxBins: number
}

const common = {
  trees: positiveInt.max(1000).default(30),
  maxDepth: positiveInt.max(8).default(3),
  learningRate: positive.max(1).default(0.3),
  lambda: z.number().nonnegative().default(1),
  gamma: z.number().nonnegative().default(0),
  minChildWeight: z.number().nonnegative().default(1),
  maxBins: z.number().int().min(2).max(64).default(32),
}

const secureBoostSchema = z.strictObject({ ...common, mode: z.literal('he').optional() })
const federatedSchema = z.strictObject({ ...common, mode: z.literal('hfl').optional() })

export function secureBoostParams(params: unknown): TreeParams {
  const { mode: _, ...p } = parseParams('secureboost', secureBoostSchema, params)
  return p
}

export function federatedGbdtParams(params: unknown): TreeParams {
  const { mode: _, ...p } = parseParams('federated-gbdt', federatedSchema, params)
  return p
}
