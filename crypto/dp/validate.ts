import { SyndicateError } from '../errors.ts'

/** Argument checks shared by the DP modules; all raise ERR_DP_BAD_PARAMETER naming the parameter. */
export function dpParameterError(name: string, value: unknown, want: string): SyndicateError {
  return new SyndicateError('ERR_DP_BAD_PARAMETER', `${name} must be ${want}, got ${String(value)}`, {
    name,
    value,
  })
}

export function requirePositive(name: string, v: number): number {
  if (!(Number.isFinite(v) && v > 0)) throw dpParameterError(name, v, 'a finite number > 0')
  return v
}

export function requireNonNegative(name: string, v: number): number {
  if (!(Number.isFinite(v) && v >= 0)) throw dpParameterError(name, v, 'a finite number >= 0')
  return v
}

/** A probability in the open interval (0, 1) (delta, a sampling rate below 1). */
export function requireOpenUnit(name: string, v: number): number {
  if (!(v > 0 && v < 1)) throw dpParameterError(name, v, 'in (0, 1)')
  return v
}
