/**
 * FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020) for logistic regression and the MLP, with secure
 * aggregation of the updates. docs/fedavg.md has the protocol, the parameters and what each party learns.
 *
 *  setup    clients send their feature names; the aggregator checks they all match its own
 *  moments  global means and standard deviations by secure sums (moments.ts), if standardize
 *  round r  every active party trains E local epochs from the global model w, then the secure sum of
 *           [n·(w_local − w), n, validation log-loss of w, validation rows] goes to the aggregator, which
 *           steps w along Σ n·Δ / Σ n (with server momentum, FedAvgM), tracks early stopping, and publishes
 *           the new w (or the final model)
 * With dp.mode 'central' the rounds are DP-FedSGD steps instead (centralDpRounds).
 *
 * The aggregator sees only sums over the parties (and its own vector); every party sees the global models.
 */
import { gaussianMechanism } from '../../../crypto/dp/mechanisms.ts'
import { uniformOpen01 } from '../../../crypto/dp/random.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import { stratifiedSplitIndices } from '../../data/split.ts'
import { checkTrainingData } from '../../models/math.ts'
import { predictProba } from '../../models/predict.ts'
import type { LogisticRegressionModel, MlpModel, Preprocessing } from '../../models/types.ts'
import { applyPreprocessing } from '../../preprocess/scale.ts'
import { createRng } from '../../random.ts'
import type { JointContext, LocalData, ModelPart } from '../types.ts'
import {
  type Aggregation,
  decodeMessage,
  ERR_HFL_BAD_MESSAGE,
  encodeMessage,
  publish,
  receivePublished,
  secureSum,
} from './aggregate.ts'
import { type DpSpend, planDp } from './dp.ts'
import {
  applyStep,
  clippedGradientSum,
  logLossSum,
  lrNet,
  mlpInit,
  mlpLayers,
  mlpNet,
  mlpShape,
  type Net,
  type Optimizer,
  poissonSample,
  trainLocal,
} from './local.ts'
import { secureMoments } from './moments.ts'
import { type DpParams, type HflParams, parseParams } from './params.ts'

export interface HflModelParams {
  model: LogisticRegressionModel | MlpModel
  /** Communication rounds run (early stopping may end before the cap). */
  rounds: number
  /** Parties whose data is in the final model (those that did not drop out). */
  contributors: string[]
  mu: number
  /** This party's privacy spend on its own dataset (DP runs only). */
  dp?: DpSpend
}

export async function trainHorizontal(
  kind: 'lr' | 'mlp',
  ctx: JointContext,
  data: LocalData,
): Promise<ModelPart> {
  const p = parseParams(kind, ctx.params)
  const d = data.features.length
  if (!data.y) throw new SyndicateError('ERR_HFL_INPUT', 'horizontal training needs labels on every party')
  checkTrainingData(data.X, data.y, data.features)
  const a: Aggregation = {
    channel: ctx.channel,
    self: ctx.self,
    aggregator: ctx.labelHolder,
    tagPrefix: `${ctx.tagPrefix}hfl/`,
    active: [...ctx.channel.parties],
    fracBits: p.fracBits,
    threshold: p.threshold,
    roundTimeoutMs: p.roundTimeoutMs,
    signal: ctx.signal,
  }
  if (!a.active.includes(a.aggregator) || !a.active.includes(a.self)) {
    throw new SyndicateError(
      'ERR_HFL_PARAMS',
      `${a.aggregator} and ${a.self} must be parties of the job channel`,
    )
  }
  await agreeOnFeatures(a, kind, data.features)

  ctx.progress({ phase: 'moments' })
  const moments = await secureMoments(
    { ...a, fracBits: p.momentFracBits },
    data.X,
    data.rows,
    d,
    p.standardize,
  )
  a.active = moments.active
  const preprocessing: Preprocessing = p.standardize
    ? { standardize: { mean: moments.mean, scale: moments.scale } }
    : {}
  const Z = p.standardize ? applyPreprocessing(preprocessing, data.X, data.rows, d) : data.X

  const index = ctx.channel.parties.indexOf(ctx.self)
  const partySeed = (ctx.seed + Math.imul(0x9e3779b9, index + 1)) >>> 0
  const all = Uint32Array.from({ length: data.rows }, (_, i) => i)
  const split =
    p.validationFraction > 0
      ? stratifiedSplitIndices(data.y, p.validationFraction, partySeed ^ 0x5eed)
      : { train: all, test: new Uint32Array(0) }
  const shape = mlpShape([d, ...p.hidden, 1])
  const net: Net = kind === 'lr' ? lrNet(d) : mlpNet(shape)
  const optimizer: Optimizer =
    kind === 'lr'
      ? { kind: 'sgd', learningRate: p.learningRate, l2: p.l2 ?? 1 / moments.rows }
      : {
          kind: 'adam',
          learningRate: p.learningRate,
          alpha: p.alpha,
          m1: new Float64Array(net.size),
          m2: new Float64Array(net.size),
          step: 0,
        }
  const job: Job = {
    p,
    a,
    ctx,
    net,
    Z,
    y: data.y,
    d,
    split,
    optimizer,
    rows: moments.rows,
    partySeed,
    w0: kind === 'lr' ? new Float64Array(net.size) : mlpInit(shape, ctx.seed),
  }
  const out = p.dp?.mode === 'central' ? await centralDpRounds(job, p.dp) : await fedAvgRounds(job)
  const final = out.w
  const model: LogisticRegressionModel | MlpModel =
    kind === 'lr'
      ? {
          kind: 'lr',
          features: [...data.features],
          preprocessing,
          weights: Array.from(final.subarray(0, d)),
          bias: final[d],
        }
      : { kind: 'mlp', features: [...data.features], preprocessing, layers: mlpLayers(shape, final) }
  const params: HflModelParams = { model, rounds: out.rounds, contributors: [...a.active], mu: p.mu }
  if (out.dp) params.dp = out.dp
  return { algorithm: kind === 'lr' ? 'fedavg-lr' : 'fedavg-mlp', params, features: [...data.features] }
}

/** Everything both training loops share, fixed by the setup phase. */
interface Job {
  p: HflParams
  a: Aggregation
  ctx: JointContext
  net: Net
  Z: Float64Array
  y: Uint8Array
  d: number
  split: { train: Uint32Array; test: Uint32Array }
  optimizer: Optimizer
  /** N: all parties' rows (from the secure moments). */
  rows: number
  partySeed: number
  /** The initial global model (the same on every party: zeros, or the MLP's seeded initialisation). */
  w0: Float64Array
}

interface Outcome {
  w: Float64Array
  rounds: number
  dp?: DpSpend
}

/** FedAvg / FedProx rounds with optional local DP-SGD (module comment). */
async function fedAvgRounds(job: Job): Promise<Outcome> {
  const { p, a, ctx, net, Z, d, split, optimizer } = job
  const y = job.y
  const plan = p.dp ? planDp(p.dp, split.train.length, p.batchSize, p.rounds * p.localEpochs) : undefined
  const run = {
    net,
    Z,
    y,
    d,
    rows: split.train,
    batchSize: p.batchSize,
    epochs: p.localEpochs,
    mu: p.mu,
    optimizer,
    rng: createRng(job.partySeed),
    dp:
      plan && p.dp
        ? {
            clipNorm: p.dp.clipNorm,
            noiseMultiplier: plan.noiseMultiplier,
            sampleRate: plan.sampleRate,
            uniform: uniformOpen01,
          }
        : undefined,
  }

  const validate = p.validationFraction > 0
  let w = job.w0
  let best = w
  let bestLoss = Number.POSITIVE_INFINITY
  let since = 0
  let steps = 0
  const velocity = new Float64Array(net.size)
  let final: Float64Array | undefined
  let round = 0
  const m = net.size
  for (; final === undefined; round++) {
    const training = round < p.rounds
    ctx.progress({ phase: 'round', done: round, total: p.rounds })
    const vec = new Float64Array(m + 3)
    if (training) {
      const local = trainLocal(run, w, round * p.localEpochs)
      steps += local.steps
      const n = split.train.length
      for (let k = 0; k < m; k++) vec[k] = n * (local.w[k] - w[k])
      vec[m] = n
    }
    if (validate) {
      vec[m + 1] = logLossSum(net, w, Z, y, split.test, d)
      vec[m + 2] = split.test.length
    }
    const sum = await secureSum(a, vec)
    if (!sum) {
      const msg = await receivePublished(a, `round${round}/model`, m)
      if (msg.header.stop === true) final = msg.vector
      else if (msg.header.stop === false) w = msg.vector
      else
        throw new SyndicateError(ERR_HFL_BAD_MESSAGE, `${a.aggregator} sent a round result without stop flag`)
      continue
    }
    // Aggregator: the validation loss is that of w, the model the parties started this round from.
    if (validate && round > 0 && sum.sum[m + 2] > 0) {
      const loss = sum.sum[m + 1] / sum.sum[m + 2]
      if (loss < bestLoss - 1e-5) {
        bestLoss = loss
        best = w
        since = 0
      } else {
        since++
      }
    }
    let next = w
    if (training && sum.sum[m] > 0) {
      next = new Float64Array(m)
      const step = p.serverLearningRate / sum.sum[m]
      for (let k = 0; k < m; k++) {
        velocity[k] = p.serverMomentum * velocity[k] + step * sum.sum[k]
        next[k] = w[k] + velocity[k]
      }
    }
    let stop: Float64Array | undefined
    if (!training) stop = validate ? best : w
    else if (validate && since >= p.patience) stop = best
    else if (!validate && round === p.rounds - 1) stop = next
    await publish(a, `round${round}/model`, sum.contributors, { stop: stop !== undefined }, stop ?? next)
    if (stop) final = stop
    else w = next
  }

  return { w: final, rounds: round, dp: plan?.spend(steps) }
}

/**
 * Central DP (DP-FedSGD): one optimiser step per secure aggregation. Every party samples its rows with rate
 * q = batchSize / N and sends the sum of their clipped gradients; the aggregator adds N(0, (sigma·C)²) to the
 * sum, divides by the expected batch q·N and steps. The aggregator sees the sum before its noise.
 */
async function centralDpRounds(job: Job, dp: DpParams): Promise<Outcome> {
  const { p, a, ctx, net, Z, y, d, split } = job
  const plan = planDp(dp, job.rows, p.batchSize, p.rounds)
  const grad = new Float64Array(net.size)
  const scratch = new Float64Array(net.size)
  let w = job.w0
  const total = p.rounds * plan.stepsPerEpoch
  for (let t = 0; t < total; t++) {
    if (t % plan.stepsPerEpoch === 0)
      ctx.progress({ phase: 'round', done: t / plan.stepsPerEpoch, total: p.rounds })
    const batch = poissonSample(split.train, plan.sampleRate, uniformOpen01)
    clippedGradientSum(net, w, Z, y, d, batch, dp.clipNorm, grad, scratch)
    const sum = await secureSum(a, grad)
    if (!sum) {
      w = (await receivePublished(a, `step${t}/model`, net.size)).vector
      continue
    }
    const noisy = gaussianMechanism(sum.sum, plan.noiseMultiplier * dp.clipNorm)
    const next = w.slice()
    applyStep(
      job.optimizer,
      net,
      next,
      w,
      noisy,
      plan.sampleRate * job.rows,
      0,
      Math.floor(t / plan.stepsPerEpoch),
    )
    await publish(a, `step${t}/model`, sum.contributors, {}, next)
    w = next
  }
  return { w, rounds: p.rounds, dp: plan.spend(total) }
}

/**
 * Every party must train on the same columns in the same order; the aggregator checks and tells everyone. A
 * client silent for `roundTimeoutMs` is dropped like a secagg straggler; a malformed answer fails the job.
 */
async function agreeOnFeatures(a: Aggregation, kind: string, features: string[]): Promise<void> {
  const tag = 'setup/features'
  const ch = a.channel
  if (a.self !== a.aggregator) {
    await ch.send(a.aggregator, a.tagPrefix + tag, encodeMessage({ kind, features }))
    const { header } = await receivePublished(a, `${tag}/ok`, 0)
    if (header.ok !== true) {
      throw new SyndicateError(
        'ERR_HFL_SCHEMA',
        String(header.error ?? 'the parties disagree on the features'),
      )
    }
    return
  }
  const clients = a.active.filter((p) => p !== a.aggregator)
  const problems: string[] = []
  const answered: string[] = [a.self]
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, a.roundTimeoutMs)
  })
  const check = async (p: string) => {
    try {
      const { header } = decodeMessage(p, await ch.recv(p, a.tagPrefix + tag), 0)
      answered.push(p)
      if (header.kind !== kind) problems.push(`${p} runs ${String(header.kind)}, not ${kind}`)
      else if (JSON.stringify(header.features) !== JSON.stringify(features)) {
        problems.push(
          `${p} has features ${JSON.stringify(header.features)}, expected ${JSON.stringify(features)}`,
        )
      }
    } catch (e) {
      if (e instanceof SyndicateError && e.code === ERR_HFL_BAD_MESSAGE) problems.push(e.message)
    }
  }
  await Promise.race([Promise.all(clients.map(check)), timeout])
  clearTimeout(timer)
  const error = problems.length
    ? `horizontal training needs the same feature columns in the same order on every party: ${problems.join('; ')}`
    : undefined
  await publish(a, `${tag}/ok`, answered, { ok: !error, error })
  if (error) throw new SyndicateError('ERR_HFL_SCHEMA', error)
}

export function predictHorizontal(part: ModelPart, data: LocalData): Float64Array {
  const params = part.params as Partial<HflModelParams> | null
  const model = params?.model
  if (!model || (model.kind !== 'lr' && model.kind !== 'mlp')) {
    throw new SyndicateError('ERR_HFL_MODEL', `model part of ${part.algorithm} has no horizontal model`)
  }
  if (JSON.stringify(model.features) !== JSON.stringify(data.features)) {
    throw new SyndicateError(
      'ERR_HFL_SCHEMA',
      `the model expects features ${JSON.stringify(model.features)}, the data has ${JSON.stringify(data.features)}`,
    )
  }
  return predictProba(model, data.X, data.rows)
}
