/**
 * The complementary error function and the normal CDF to near double precision, in log space where the
 * accountant needs it (tails far below the smallest double). Power series below 2, Lentz's continued
 * fraction above (erfc(x) = e^{-x^2}/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))).
 */

const SQRT_PI = Math.sqrt(Math.PI)
const LOG_SQRT_PI = Math.log(SQRT_PI)

/** erf(x) by its Maclaurin series; accurate to ~1e-14 absolute for |x| < 2. */
function erfSeries(x: number): number {
  const x2 = x * x
  let term = x
  let sum = x
  for (let n = 1; n < 200; n++) {
    term *= -x2 / n
    const add = term / (2 * n + 1)
    sum += add
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break
  }
  return (2 / SQRT_PI) * sum
}

/** log of the continued-fraction factor K(x) with erfc(x) = e^{-x^2} K(x) / sqrt(pi), for x >= 2. */
function logCfFactor(x: number): number {
  const tiny = 1e-300
  let f = x
  let c = x
  let d = 0
  for (let n = 1; n < 500; n++) {
    const a = n / 2
    d = x + a * d
    d = Math.abs(d) < tiny ? tiny : d
    c = x + a / c
    c = Math.abs(c) < tiny ? tiny : c
    d = 1 / d
    const delta = c * d
    f *= delta
    if (Math.abs(delta - 1) < 1e-16) break
  }
  return -Math.log(f)
}

/** log(erfc(x)) for any real x, without underflow for large x. */
export function logErfc(x: number): number {
  if (x >= 2) return -x * x + logCfFactor(x) - LOG_SQRT_PI
  if (x > -2) return Math.log1p(-erfSeries(x))
  return Math.log(2 - Math.exp(logErfc(-x)))
}

export function erfc(x: number): number {
  return Math.exp(logErfc(x))
}

/** Standard normal CDF. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2)
}

/** log of the standard normal CDF (log_ndtr), finite far into the lower tail. */
export function logNormalCdf(x: number): number {
  return Math.log(0.5) + logErfc(-x / Math.SQRT2)
}
