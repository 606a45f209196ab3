import { SyndicateError } from '../errors.ts'
import { logErfc } from './normal.ts'
import { dpParameterError, requireNonNegative, requireOpenUnit, requirePositive } from './validate.ts'

/**
 * Rényi-DP accounting. The RDP of the Poisson-subsampled Gaussian mechanism (sampling rate q, noise multiplier
 * sigma = noise std / L2 sensitivity) at order alpha is computed exactly as in Mironov, Talwar & Zhang (2019),
 * "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (the method of TensorFlow Privacy and Opacus):
 * integer orders by the binomial expansion of A_alpha, fractional orders by its two-sided series. RDP composes
 * by addition over steps and mechanisms; `epsilon()` converts to (epsilon, delta)-DP, minimising over orders.
 */

/** Orders 1.1..10.9 (step 0.1), 12..63, 128, 256, 512: TensorFlow Privacy's defaults plus large orders. */
export const DEFAULT_ORDERS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, i) => Math.round((1.1 + i * 0.1) * 10) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
  128,
  256,
  512,
]

/**
 * 'improved' (default): Balle et al. 2020 / Canonne, Kamath & Steinke 2020,
 *   eps = rdp + log1p(-1/alpha) - (log(delta) + log(alpha)) / (alpha - 1);
 * 'classic': Mironov 2017, eps = rdp + log(1/delta) / (alpha - 1) (what the older published examples use).
 */
export type RdpConversion = 'improved' | 'classic'

function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b)
  const lo = Math.min(a, b)
  if (lo === Number.NEGATIVE_INFINITY) return hi
  return Math.log1p(Math.exp(lo - hi)) + hi
}

function logSub(a: number, b: number): number {
  if (b === Number.NEGATIVE_INFINITY) return a
  if (a <= b) return Number.NEGATIVE_INFINITY // rounding only; the exact difference is non-negative
  const d = a - b
  return d > 700 ? a : Math.log(Math.expm1(d)) + b
}

/** log A_alpha for integer alpha: sum_i C(alpha,i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)). */
function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = Number.NEGATIVE_INFINITY
  let logBinom = 0 // log C(alpha, 0)
  const lq = Math.log(q)
  const l1q = Math.log1p(-q)
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i)
    logA = logAdd(logA, logBinom + i * lq + (alpha - i) * l1q + (i * i - i) / (2 * sigma * sigma))
  }
  return logA
}

/** log A_alpha for fractional alpha: the two-sided series split at z0 (Mironov et al. 2019, Section 3.3). */
function logAFrac(q: number, sigma: number, alpha: number): number {
  let logA0 = Number.NEGATIVE_INFINITY
  let logA1 = Number.NEGATIVE_INFINITY
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5
  const lq = Math.log(q)
  const l1q = Math.log1p(-q)
  let logAbsBinom = 0 // log |C(alpha, i)|
  let positive = true // sign of C(alpha, i)
  for (let i = 0; ; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i
      logAbsBinom += Math.log(Math.abs(factor))
      if (factor < 0) positive = !positive
    }
    const j = alpha - i
    const logT0 = logAbsBinom + i * lq + j * l1q
    const logT1 = logAbsBinom + j * lq + i * l1q
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma))
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma))
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
    if (positive) {
      logA0 = logAdd(logA0, logS0)
      logA1 = logAdd(logA1, logS1)
    } else {
      logA0 = logSub(logA0, logS0)
      logA1 = logSub(logA1, logS1)
    }
    if (Math.max(logS0, logS1) < -30 || i > 10_000) break
  }
  return logAdd(logA0, logA1)
}

/** RDP at `alpha` of one step of the Poisson-subsampled Gaussian mechanism. */
export function subsampledGaussianRdp(q: number, sigma: number, alpha: number): number {
  requirePositive('noise multiplier', sigma)
  if (!(alpha > 1)) throw dpParameterError('order', alpha, '> 1')
  if (!(q >= 0 && q <= 1)) throw dpParameterError('sampling rate', q, 'in [0, 1]')
  if (q === 0) return 0
  if (q === 1) return alpha / (2 * sigma * sigma)
  if (alpha === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  const logA = Number.isInteger(alpha) ? logAInt(q, sigma, alpha) : logAFrac(q, sigma, alpha)
  return logA / (alpha - 1)
}

/** RDP at `alpha` of the Laplace mechanism with scale b = noise scale / L1 sensitivity (Mironov 2017). */
export function laplaceRdp(b: number, alpha: number): number {
  requirePositive('Laplace scale / sensitivity', b)
  if (!(alpha > 1)) throw dpParameterError('order', alpha, '> 1')
  const x = Math.log(alpha / (2 * alpha - 1)) + (alpha - 1) / b
  const y = Math.log((alpha - 1) / (2 * alpha - 1)) - alpha / b
  return logAdd(x, y) / (alpha - 1)
}

/** Converts an RDP curve to (epsilon, delta)-DP, returning the best epsilon and the order that gives it. */
export function rdpToEpsilon(
  orders: readonly number[],
  rdp: ArrayLike<number>,
  delta: number,
  conversion: RdpConversion = 'improved',
): { epsilon: number; order: number } {
  requireOpenUnit('delta', delta)
  let best = { epsilon: Number.POSITIVE_INFINITY, order: Number.NaN }
  orders.forEach((a, k) => {
    const r = rdp[k]
    let eps: number
    if (conversion === 'classic') eps = r - Math.log(delta) / (a - 1)
    else if (delta * delta + Math.expm1(-r) >= 0)
      eps = 0 // the KL bound already gives delta
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1)
    else eps = Number.POSITIVE_INFINITY // numerically unstable as alpha -> 1
    if (eps < best.epsilon) best = { epsilon: Math.max(0, eps), order: a }
  })
  return best
}

export interface SubsampledGaussianEvent {
  kind: 'subsampled-gaussian'
  noiseMultiplier: number
  sampleRate: number
  steps: number
}
export interface LaplaceEvent {
  kind: 'laplace'
  /** Noise scale divided by the L1 sensitivity. */
  scale: number
  count: number
}
export type PrivacyEvent = SubsampledGaussianEvent | LaplaceEvent

/**
 * Composes privacy events by adding their RDP curves. The event list is the accountant's state: serialise it
 * with `events` and rebuild with `new RdpAccountant(orders, events)`.
 */
export class RdpAccountant {
  readonly orders: readonly number[]
  readonly #rdp: Float64Array
  readonly #events: PrivacyEvent[] = []

  constructor(orders: readonly number[] = DEFAULT_ORDERS, events: readonly PrivacyEvent[] = []) {
    if (orders.length === 0 || orders.some((a) => !(a > 1))) {
      throw dpParameterError('orders', orders.join(','), 'a non-empty list of numbers > 1')
    }
    this.orders = [...orders]
    this.#rdp = new Float64Array(orders.length)
    for (const e of events) this.add(e)
  }

  get events(): readonly PrivacyEvent[] {
    return this.#events
  }

  add(e: PrivacyEvent): this {
    if (e.kind === 'subsampled-gaussian') {
      requireNonNegative('steps', e.steps)
      if (!Number.isInteger(e.steps)) throw dpParameterError('steps', e.steps, 'an integer')
      this.orders.forEach((a, k) => {
        this.#rdp[k] += e.steps * subsampledGaussianRdp(e.sampleRate, e.noiseMultiplier, a)
      })
    } else if (e.kind === 'laplace') {
      if (!(Number.isInteger(e.count) && e.count >= 0))
        throw dpParameterError('count', e.count, 'an integer >= 0')
      this.orders.forEach((a, k) => {
        this.#rdp[k] += e.count * laplaceRdp(e.scale, a)
      })
    } else {
      throw new SyndicateError('ERR_DP_BAD_PARAMETER', 'unknown privacy event kind', { event: e })
    }
    this.#events.push({ ...e })
    return this
  }

  /** The composed RDP curve, one value per order. */
  rdp(): Float64Array {
    return this.#rdp.slice()
  }

  epsilon(delta: number, conversion: RdpConversion = 'improved'): { epsilon: number; order: number } {
    return rdpToEpsilon(this.orders, this.#rdp, delta, conversion)
  }
}

export interface DpSgdSetting {
  datasetSize: number
  batchSize: number
  noiseMultiplier: number
  epochs: number
  delta: number
  orders?: readonly number[]
  conversion?: RdpConversion
}

/**
 * (epsilon, delta) of DP-SGD with Poisson sampling at rate batchSize/datasetSize for
 * ceil(epochs * datasetSize / batchSize) steps, as TensorFlow Privacy's compute_dp_sgd_privacy counts them.
 */
export function dpSgdEpsilon(s: DpSgdSetting): { epsilon: number; order: number; steps: number } {
  requirePositive('dataset size', s.datasetSize)
  requirePositive('batch size', s.batchSize)
  requirePositive('epochs', s.epochs)
  const q = s.batchSize / s.datasetSize
  if (q > 1) throw dpParameterError('batch size', s.batchSize, 'at most the dataset size')
  const steps = Math.ceil((s.epochs * s.datasetSize) / s.batchSize)
  const acc = new RdpAccountant(s.orders).add({
    kind: 'subsampled-gaussian',
    noiseMultiplier: s.noiseMultiplier,
    sampleRate: q,
    steps,
  })
  return { ...acc.epsilon(s.delta, s.conversion), steps }
}

/**
 * The smallest noise multiplier (to ~0.1%) whose `steps` of the subsampled Gaussian mechanism at `sampleRate`
 * stay within (epsilon, delta): what a job proposal derives from the budget it asks for.
 */
export function noiseMultiplierFor(o: {
  epsilon: number
  delta: number
  sampleRate: number
  steps: number
  orders?: readonly number[]
}): number {
  requirePositive('epsilon', o.epsilon)
  const eps = (sigma: number) =>
    new RdpAccountant(o.orders)
      .add({ kind: 'subsampled-gaussian', noiseMultiplier: sigma, sampleRate: o.sampleRate, steps: o.steps })
      .epsilon(o.delta).epsilon
  let lo = 0.05
  let hi = 1
  while (eps(hi) > o.epsilon) {
    lo = hi
    hi *= 2
    if (hi > 1e4) throw dpParameterError('epsilon', o.epsilon, 'reachable with a noise multiplier below 10^4')
  }
  while (hi / lo > 1.001) {
    const mid = Math.sqrt(lo * hi)
    if (eps(mid) > o.epsilon) lo = mid
    else hi = mid
  }
  return hi
}
