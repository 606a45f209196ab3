/**
 * Multi-layer perceptron for default probability: ReLU hidden layers, one sigmoid output, log-loss with L2 on
 * the weights (scikit-learn's alpha convention: alpha·‖W‖²/(2·batch)), Adam, Glorot-uniform initialisation,
 * and early stopping on a stratified validation split (the weights with the best validation log-loss win).
 * All randomness (split, init, shuffles) comes from `seed`: same seed and data → identical model.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import { stratifiedSplitIndices } from '../data/split.ts'
import { applyPreprocessing, fitPreprocessing, type PreprocessOptions } from '../preprocess/scale.ts'
import { createRng, type Rng, shuffleInPlace } from '../random.ts'
import { checkTrainingData, sigmoid } from './math.ts'
import type { DenseLayer, MlpModel } from './types.ts'

export interface MlpOptions {
  /** Hidden layer widths (default [32, 16]). */
  hidden?: number[]
  /** Adam step size (default 1e-3), β1 0.9, β2 0.999, ε 1e-8. */
  learningRate?: number
  batchSize?: number
  /** L2 strength alpha (default 1e-4). */
  alpha?: number
  /** Epoch cap (default 60) and epochs without validation improvement before stopping (default 5). */
  maxEpochs?: number
  patience?: number
  /** Share of training rows held out for early stopping (default 0.1). */
  validationFraction?: number
  seed?: number
  preprocess?: PreprocessOptions
}

/** Parameters of all layers in one flat array: per layer W (out × in, row-major) then b. */
export interface MlpShape {
  sizes: number[]
  wOff: number[]
  bOff: number[]
  total: number
}

export function mlpShape(sizes: number[]): MlpShape {
  const wOff: number[] = []
  const bOff: number[] = []
  let t = 0
  for (let l = 1; l < sizes.length; l++) {
    wOff.push(t)
    t += sizes[l] * sizes[l - 1]
    bOff.push(t)
    t += sizes[l]
  }
  return { sizes, wOff, bOff, total: t }
}

/** Scratch buffers for one row's forward and backward pass. */
export interface MlpWork {
  act: Float64Array[]
  delta: Float64Array[]
}

export function mlpWork(s: MlpShape): MlpWork {
  return { act: s.sizes.map((m) => new Float64Array(m)), delta: s.sizes.map((m) => new Float64Array(m)) }
}

/** Glorot-uniform weights, gain 6 for ReLU layers and 2 for the sigmoid output (as scikit-learn); biases too. */
export function glorotInit(s: MlpShape, rng: Rng): Float64Array {
  const w = new Float64Array(s.total)
  for (let l = 1; l < s.sizes.length; l++) {
    const factor = l === s.sizes.length - 1 ? 2 : 6
    const bound = Math.sqrt(factor / (s.sizes[l - 1] + s.sizes[l]))
    const end = s.bOff[l - 1] + s.sizes[l]
    for (let k = s.wOff[l - 1]; k < end; k++) w[k] = (2 * rng.next() - 1) * bound
  }
  return w
}

/** The flat parameter vector as the `layers` of an MlpModel. */
export function mlpLayers(s: MlpShape, w: Float64Array): DenseLayer[] {
  const layers: DenseLayer[] = []
  for (let l = 1; l < s.sizes.length; l++) {
    const nin = s.sizes[l - 1]
    const weights: number[][] = []
    for (let o = 0; o < s.sizes[l]; o++) {
      weights.push(Array.from(w.subarray(s.wOff[l - 1] + o * nin, s.wOff[l - 1] + (o + 1) * nin)))
    }
    layers.push({ weights, bias: Array.from(w.subarray(s.bOff[l - 1], s.bOff[l - 1] + s.sizes[l])) })
  }
  return layers
}

/** Forward pass of row z; act[l] is layer l's output (act[0] = input, ReLU applied to hidden layers). Returns the logit. */
export function mlpForward(s: MlpShape, w: Float64Array, z: Float64Array, work: MlpWork): number {
  work.act[0] = z
  const L = s.sizes.length - 1
  for (let l = 1; l <= L; l++) {
    const nin = s.sizes[l - 1]
    const nout = s.sizes[l]
    const a = work.act[l - 1]
    const out = work.act[l]
    const wo = s.wOff[l - 1]
    const bo = s.bOff[l - 1]
    for (let o = 0; o < nout; o++) {
      let v = w[bo + o]
      const row = wo + o * nin
      for (let i = 0; i < nin; i++) v += w[row + i] * a[i]
      out[o] = l < L && v < 0 ? 0 : v
    }
  }
  return work.act[L][0]
}

/** Add the log-loss gradient of one row to grad (after forward on that row). */
export function mlpBackward(
  s: MlpShape,
  w: Float64Array,
  grad: Float64Array,
  err: number,
  work: MlpWork,
): void {
  const L = s.sizes.length - 1
  work.delta[L][0] = err
  for (let l = L; l >= 1; l--) {
    const nin = s.sizes[l - 1]
    const nout = s.sizes[l]
    const a = work.act[l - 1]
    const dl = work.delta[l]
    const wo = s.wOff[l - 1]
    const bo = s.bOff[l - 1]
    for (let o = 0; o < nout; o++) {
      const e = dl[o]
      if (e === 0) continue
      grad[bo + o] += e
      const row = wo + o * nin
      for (let i = 0; i < nin; i++) grad[row + i] += e * a[i]
    }
    if (l > 1) {
      const prev = work.delta[l - 1]
      for (let i = 0; i < nin; i++) {
        if (a[i] <= 0) {
          prev[i] = 0
          continue
        }
        let v = 0
        for (let o = 0; o < nout; o++) v += w[wo + o * nin + i] * dl[o]
        prev[i] = v
      }
    }
  }
}

function meanLogLoss(
  s: MlpShape,
  w: Float64Array,
  Z: Float64Array,
  y: Uint8Array,
  idx: Uint32Array,
  work: MlpWork,
): number {
  const d = s.sizes[0]
  let loss = 0
  for (const r of idx) {
    const p = Math.min(
      1 - 1e-15,
      Math.max(1e-15, sigmoid(mlpForward(s, w, Z.subarray(r * d, r * d + d), work))),
    )
    loss -= y[r] === 1 ? Math.log(p) : Math.log(1 - p)
  }
  return loss / idx.length
}

export function trainMlp(
  X: Float64Array,
  y: Uint8Array,
  features: string[],
  opts: MlpOptions = {},
): MlpModel {
  checkTrainingData(X, y, features)
  const hidden = opts.hidden ?? [32, 16]
  const lr = opts.learningRate ?? 1e-3
  const batch = opts.batchSize ?? 200
  const alpha = opts.alpha ?? 1e-4
  const maxEpochs = opts.maxEpochs ?? 60
  const patience = opts.patience ?? 5
  const valFrac = opts.validationFraction ?? 0.1
  if (!hidden.every((h) => Number.isInteger(h) && h > 0) || !(lr > 0) || !(batch >= 1) || !(alpha >= 0)) {
    throw new SyndicateError('ERR_LEARN_PARAMS', `Invalid MLP hyper-parameters: ${JSON.stringify(opts)}.`)
  }
  const n = y.length
  const d = features.length
  const seed = opts.seed ?? 0
  const preprocessing = fitPreprocessing(X, n, d, opts.preprocess)
  const Z = applyPreprocessing(preprocessing, X, n, d)
  const { train, test: val } = stratifiedSplitIndices(y, valFrac, seed ^ 0x5eed)

  const s = mlpShape([d, ...hidden, 1])
  const rng = createRng(seed)
  const w = glorotInit(s, rng)
  const work = mlpWork(s)
  const grad = new Float64Array(s.total)
  const m1 = new Float64Array(s.total)
  const m2 = new Float64Array(s.total)
  const isWeight = new Uint8Array(s.total)
  for (let l = 1; l < s.sizes.length; l++) isWeight.fill(1, s.wOff[l - 1], s.bOff[l - 1])
  const b1 = 0.9
  const b2 = 0.999
  let step = 0

  let best = w.slice()
  let bestLoss = Number.POSITIVE_INFINITY
  let since = 0
  const order = Uint32Array.from(train)
  for (let epoch = 0; epoch < maxEpochs && since < patience; epoch++) {
    shuffleInPlace(order, rng)
    for (let start = 0; start < order.length; start += batch) {
      const end = Math.min(order.length, start + batch)
      grad.fill(0)
      for (let k = start; k < end; k++) {
        const r = order[k]
        const logit = mlpForward(s, w, Z.subarray(r * d, r * d + d), work)
        mlpBackward(s, w, grad, sigmoid(logit) - y[r], work)
      }
      const size = end - start
      step++
      const c1 = 1 - b1 ** step
      const c2 = 1 - b2 ** step
      for (let k = 0; k < s.total; k++) {
        const gk = (grad[k] + (isWeight[k] ? alpha * w[k] : 0)) / size
        m1[k] = b1 * m1[k] + (1 - b1) * gk
        m2[k] = b2 * m2[k] + (1 - b2) * gk * gk
        w[k] -= (lr * (m1[k] / c1)) / (Math.sqrt(m2[k] / c2) + 1e-8)
      }
    }
    const loss = meanLogLoss(s, w, Z, y, val, work)
    if (loss < bestLoss - 1e-5) {
      bestLoss = loss
      best = w.slice()
      since = 0
    } else {
      since++
    }
  }

  return { kind: 'mlp', features: [...features], preprocessing, layers: mlpLayers(s, best) }
}
