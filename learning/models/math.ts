/** Small numeric helpers shared by the models. */
import { SyndicateError } from '../../crypto/errors.ts'

/** Logistic sigmoid without overflow for large |z|. */
export function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z))
  const e = Math.exp(z)
  return e / (1 + e)
}

/** log(p / (1 − p)). */
export function logit(p: number): number {
  return Math.log(p / (1 - p))
}

/**
 * Solve A x = b for a symmetric positive definite m × m matrix (row-major) by Cholesky; A and b are left
 * untouched.
 */
export function solveSpd(A: Float64Array, b: Float64Array, m: number): Float64Array {
  const L = new Float64Array(m * m)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * m + j]
      for (let k = 0; k < j; k++) s -= L[i * m + k] * L[j * m + k]
      if (i === j) {
        if (!(s > 0)) {
          throw new SyndicateError(
            'ERR_LEARN_NUMERIC',
            'The Hessian is not positive definite (perfectly collinear or constant features); add L2 regularisation.',
          )
        }
        L[i * m + i] = Math.sqrt(s)
      } else {
        L[i * m + j] = s / L[j * m + j]
      }
    }
  }
  const z = new Float64Array(m)
  for (let i = 0; i < m; i++) {
    let s = b[i]
    for (let k = 0; k < i; k++) s -= L[i * m + k] * z[k]
    z[i] = s / L[i * m + i]
  }
  const x = new Float64Array(m)
  for (let i = m - 1; i >= 0; i--) {
    let s = z[i]
    for (let k = i + 1; k < m; k++) s -= L[k * m + i] * x[k]
    x[i] = s / L[i * m + i]
  }
  return x
}

/** Training inputs must be consistent before any math runs on them. */
export function checkTrainingData(X: Float64Array, y: Uint8Array, features: string[]): void {
  const d = features.length
  if (d === 0 || y.length === 0 || X.length !== y.length * d) {
    throw new SyndicateError(
      'ERR_LEARN_INPUT',
      `Training data is inconsistent: ${y.length} labels, ${d} features, ${X.length} values (expected labels × features).`,
    )
  }
  let pos = 0
  for (let i = 0; i < y.length; i++) pos += y[i]
  if (pos === 0 || pos === y.length) {
    throw new SyndicateError(
      'ERR_LEARN_INPUT',
      'Training data has only one class; a credit model needs goods and bads.',
    )
  }
}
