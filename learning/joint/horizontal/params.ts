/** Hyper-parameters of the horizontal algorithms, validated from the job spec (unknown keys are an error). */
import { SyndicateError } from '../../../crypto/errors.ts'

export const ERR_HFL_PARAMS = 'ERR_HFL_PARAMS'

export interface DpParams {
  /**
   * 'local': DP-SGD inside every party's local training (Poisson-sampled batches, per-example clipping,
   * Gaussian noise on each step), so the update a party contributes is already private.
   * 'central': DP-FedSGD: each step, every party sends the sum of its clipped per-example gradients of a
   * Poisson sample (rate batchSize / N) through secure aggregation and the aggregator adds the noise once.
   */
  mode: 'local' | 'central'
  /** Per-example L2 clipping bound C. */
  clipNorm: number
  /** Noise std / C; give this or `epsilon` (then the smallest multiplier reaching it is used). */
  noiseMultiplier?: number
  epsilon?: number
  delta: number
}

export interface HflParams {
  /** Communication rounds (the cap when early stopping is on). */
  rounds: number
  /** Local epochs per round (E). */
  localEpochs: number
  batchSize: number
  learningRate: number
  /** LR: L2 on the mean loss (default 1/N over all parties' rows, scikit-learn's C = 1). */
  l2?: number
  /** MLP: hidden widths and L2 alpha. */
  hidden: number[]
  alpha: number
  /** Early stopping on a held-out share of every party's rows (0: off), with `patience` rounds. */
  validationFraction: number
  patience: number
  /** FedProx proximal strength (0: FedAvg). */
  mu: number
  /** Server step on the averaged update: w ← w + serverLearningRate · Σ n·Δ / Σ n (1: classic FedAvg). */
  serverLearningRate: number
  /** Server momentum β (FedAvgM, Hsu et al. 2019): v ← β·v + step, w ← w + v (0: none). */
  serverMomentum: number
  /** Standardise with the securely aggregated global moments (default true). */
  standardize: boolean
  /** Fixed-point fractional bits of the aggregated model updates and of the moments. */
  fracBits: number
  momentFracBits: number
  /** Secure-aggregation threshold (default: the smallest majority of the clients). */
  threshold?: number
  /** How long the aggregator waits for a party in each secure-aggregation step before dropping it. */
  roundTimeoutMs: number
  dp?: DpParams
}

const DEFAULTS = {
  lr: {
    rounds: 30,
    batchSize: 256,
    learningRate: 0.5,
    validationFraction: 0,
    patience: 5,
    serverMomentum: 0,
  },
  // Server momentum 0.5 for the MLP: with local Adam, plain averaging needs about 3x the pooled epochs to reach
  // the pooled model; FedAvgM reaches it in about 2x (docs/fedavg.md has the measurements).
  mlp: {
    rounds: 60,
    batchSize: 200,
    learningRate: 1e-3,
    validationFraction: 0.1,
    patience: 5,
    serverMomentum: 0.5,
  },
}

const KEYS = new Set([
  'rounds',
  'localEpochs',
  'batchSize',
  'learningRate',
  'l2',
  'hidden',
  'alpha',
  'validationFraction',
  'patience',
  'mu',
  'serverLearningRate',
  'serverMomentum',
  'standardize',
  'fracBits',
  'momentFracBits',
  'threshold',
  'roundTimeoutMs',
  'dp',
])

function bad(name: string, value: unknown, want: string): SyndicateError {
  return new SyndicateError(
    ERR_HFL_PARAMS,
    `parameter ${name} must be ${want}, got ${JSON.stringify(value)}`,
    {
      name,
    },
  )
}

function num(p: Record<string, unknown>, k: string, dflt: number, ok: (v: number) => boolean, want: string) {
  const v = p[k] ?? dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw bad(k, v, want)
  return v
}

const posInt = (v: number) => Number.isInteger(v) && v >= 1

export function parseParams(kind: 'lr' | 'mlp', raw: Record<string, unknown>): HflParams {
  for (const k of Object.keys(raw)) {
    if (
      !KEYS.has(k) ||
      (kind === 'lr' && (k === 'hidden' || k === 'alpha')) ||
      (kind === 'mlp' && k === 'l2')
    ) {
      throw new SyndicateError(ERR_HFL_PARAMS, `unknown parameter ${k} for horizontal ${kind}`, { name: k })
    }
  }
  const d = DEFAULTS[kind]
  const dp = raw.dp === undefined ? undefined : parseDp(raw.dp)
  const hidden = raw.hidden ?? [32, 16]
  if (
    !Array.isArray(hidden) ||
    hidden.length === 0 ||
    !hidden.every((h) => typeof h === 'number' && posInt(h))
  ) {
    throw bad('hidden', hidden, 'a non-empty list of positive integers')
  }
  if (raw.standardize !== undefined && typeof raw.standardize !== 'boolean') {
    throw bad('standardize', raw.standardize, 'a boolean')
  }
  const params: HflParams = {
    rounds: num(raw, 'rounds', d.rounds, posInt, 'a positive integer'),
    localEpochs: num(raw, 'localEpochs', 1, posInt, 'a positive integer'),
    batchSize: num(raw, 'batchSize', d.batchSize, posInt, 'a positive integer'),
    learningRate: num(raw, 'learningRate', d.learningRate, (v) => v > 0, 'a number > 0'),
    l2: raw.l2 === undefined ? undefined : num(raw, 'l2', 0, (v) => v >= 0, 'a number >= 0'),
    hidden: hidden as number[],
    alpha: num(raw, 'alpha', 1e-4, (v) => v >= 0, 'a number >= 0'),
    // Early stopping reads held-out rows outside the DP guarantee, so it is off by default under DP.
    validationFraction: num(
      raw,
      'validationFraction',
      dp ? 0 : d.validationFraction,
      (v) => v >= 0 && v < 1 && (!dp || v === 0),
      dp ? '0 when dp is set' : 'in [0, 1)',
    ),
    patience: num(raw, 'patience', d.patience, posInt, 'a positive integer'),
    mu: num(raw, 'mu', 0, (v) => v >= 0, 'a number >= 0'),
    serverLearningRate: num(raw, 'serverLearningRate', 1, (v) => v > 0, 'a number > 0'),
    serverMomentum: num(raw, 'serverMomentum', d.serverMomentum, (v) => v >= 0 && v < 1, 'in [0, 1)'),
    standardize: (raw.standardize as boolean | undefined) ?? true,
    fracBits: num(
      raw,
      'fracBits',
      24,
      (v) => Number.isInteger(v) && v >= 8 && v <= 40,
      'an integer in [8, 40]',
    ),
    momentFracBits: num(
      raw,
      'momentFracBits',
      16,
      (v) => Number.isInteger(v) && v >= 0 && v <= 40,
      'an integer in [0, 40]',
    ),
    threshold:
      raw.threshold === undefined ? undefined : num(raw, 'threshold', 0, posInt, 'a positive integer'),
    roundTimeoutMs: num(raw, 'roundTimeoutMs', 30_000, (v) => v > 0, 'a number of milliseconds > 0'),
    dp,
  }
  if (dp?.mode === 'central' && (params.mu > 0 || params.localEpochs !== 1)) {
    throw bad(
      'dp',
      raw.dp,
      'mode "local" when mu or localEpochs is set (central DP takes one step per round)',
    )
  }
  return params
}

function parseDp(raw: unknown): DpParams {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('dp', raw, 'an object')
  const p = raw as Record<string, unknown>
  for (const k of Object.keys(p)) {
    if (!['mode', 'clipNorm', 'noiseMultiplier', 'epsilon', 'delta'].includes(k)) {
      throw new SyndicateError(ERR_HFL_PARAMS, `unknown parameter dp.${k}`, { name: `dp.${k}` })
    }
  }
  const mode = p.mode ?? 'local'
  if (mode !== 'local' && mode !== 'central') throw bad('dp.mode', p.mode, '"local" or "central"')
  if ((p.noiseMultiplier === undefined) === (p.epsilon === undefined)) {
    throw bad('dp', raw, 'an object with exactly one of noiseMultiplier and epsilon')
  }
  return {
    mode,
    clipNorm: num(p, 'clipNorm', 1, (v) => v > 0, 'a number > 0'),
    noiseMultiplier:
      p.noiseMultiplier === undefined
        ? undefined
        : num(p, 'noiseMultiplier', 0, (v) => v > 0, 'a number > 0'),
    epsilon: p.epsilon === undefined ? undefined : num(p, 'epsilon', 0, (v) => v > 0, 'a number > 0'),
    delta: num(p, 'delta', 1e-5, (v) => v > 0 && v < 1, 'in (0, 1)'),
  }
}
