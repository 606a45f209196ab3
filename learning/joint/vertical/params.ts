/** Hyper-parameter validation for the vertical algorithms: a zod schema per algorithm, unknown keys refused. */
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'

export const ERR_JOINT_PARAMS = 'ERR_JOINT_PARAMS'

export function parseParams<T extends z.ZodType>(algorithm: string, schema: T, params: unknown): z.output<T> {
  const parsed = schema.safeParse(params ?? {})
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`)
    throw new SyndicateError(
      ERR_JOINT_PARAMS,
      `invalid ${algorithm} parameters: ${issues.join('; ')}; fix the job spec's params`,
      { algorithm, issues },
    )
  }
  return parsed.data
}

export const positiveInt = z.number().int().positive()
export const positive = z.number().positive()
export const nonNegative = z.number().nonnegative()
