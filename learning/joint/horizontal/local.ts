/**
 * Local training steps of horizontal learning on a flat parameter vector: the logistic regression of
 * learning/models/lr.ts (mini-batch SGD, 1/√epoch decay, L2 on the weights) and the MLP of
 * learning/models/mlp.ts (ReLU layers, sigmoid output, Adam, L2 alpha on the weights), with two additions the
 * federated setting needs: FedProx's proximal term mu·(w − w_global) and DP-SGD (Poisson-sampled batches,
 * per-example clipping, Gaussian noise).
 *
 * Why not call the baselines directly: their step functions (lr.ts `sgd`, mlp.ts `forward`/`backward`) are
 * module-private and start from their own initialisation; the forward/backward pass below mirrors mlp.ts
 * line for line so that federated and pooled training differ only by the federation.
 */
import { gaussianSamples } from '../../../crypto/dp/random.ts'
import { sigmoid } from '../../models/math.ts'
import { glorotInit, type MlpShape, mlpBackward, mlpForward, mlpWork } from '../../models/mlp.ts'
import { createRng, type Rng, shuffleInPlace } from '../../random.ts'

/** A differentiable scorer over a flat parameter vector (the logit of one standardised row). */
export interface Net {
  size: number
  /** 1 for parameters under L2 (weights), 0 for biases. */
  isWeight: Uint8Array
  /** The logit of row z; remembers what `addGrad` needs. */
  logit(w: Float64Array, z: Float64Array): number
  /** Adds err · ∂logit/∂w of the row last passed to `logit` into grad (err = p − y for log-loss). */
  addGrad(w: Float64Array, grad: Float64Array, err: number): void
}

export function lrNet(d: number): Net {
  let row: Float64Array = new Float64Array(d)
  const isWeight = new Uint8Array(d + 1)
  isWeight.fill(1, 0, d)
  return {
    size: d + 1,
    isWeight,
    logit(w, z) {
      row = z
      let s = w[d]
      for (let j = 0; j < d; j++) s += w[j] * z[j]
      return s
    },
    addGrad(_w, grad, err) {
      for (let j = 0; j < d; j++) grad[j] += err * row[j]
      grad[d] += err
    },
  }
}

export { type MlpShape, mlpLayers, mlpShape } from '../../models/mlp.ts'

/** The pooled MLP's Glorot initialisation, from `seed`. */
export function mlpInit(s: MlpShape, seed: number): Float64Array {
  return glorotInit(s, createRng(seed))
}

/** The MLP as a Net: the pooled model's own forward and backward passes. */
export function mlpNet(s: MlpShape): Net {
  const L = s.sizes.length - 1
  const work = mlpWork(s)
  const isWeight = new Uint8Array(s.total)
  for (let l = 1; l <= L; l++) isWeight.fill(1, s.wOff[l - 1], s.bOff[l - 1])
  return {
    size: s.total,
    isWeight,
    logit: (w, z) => mlpForward(s, w, z, work),
    addGrad: (w, grad, err) => mlpBackward(s, w, grad, err, work),
  }
}

/** Sum of the log-loss of `rows` (indices into Z, d columns) under w, with the mlp.ts clamp. */
export function logLossSum(
  net: Net,
  w: Float64Array,
  Z: Float64Array,
  y: Uint8Array,
  rows: Uint32Array,
  d: number,
): number {
  let loss = 0
  for (const r of rows) {
    const p = Math.min(1 - 1e-15, Math.max(1e-15, sigmoid(net.logit(w, Z.subarray(r * d, r * d + d)))))
    loss -= y[r] === 1 ? Math.log(p) : Math.log(1 - p)
  }
  return loss
}

export interface DpSgd {
  clipNorm: number
  noiseMultiplier: number
  /** Poisson sampling rate of each step (expected batch / local rows). */
  sampleRate: number
  /** Uniform in (0, 1) from a CSPRNG: the batches must stay secret (the job's seed is known to every party). */
  uniform: () => number
}

export type Optimizer =
  | { kind: 'sgd'; learningRate: number; l2: number }
  | { kind: 'adam'; learningRate: number; alpha: number; m1: Float64Array; m2: Float64Array; step: number }

export interface LocalRun {
  net: Net
  Z: Float64Array
  y: Uint8Array
  d: number
  /** Training row indices of this party. */
  rows: Uint32Array
  batchSize: number
  epochs: number
  /** FedProx proximal strength (0: plain FedAvg). */
  mu: number
  optimizer: Optimizer
  /** Shuffling randomness (seeded; shared knowledge is harmless without DP). */
  rng: Rng
  dp?: DpSgd
}

/**
 * `epochs` local passes from the global model `wg`; returns the local model and the number of optimiser steps
 * taken (what the DP accountant counts). The SGD step size decays with the global epoch index, as lr.ts.
 */
export function trainLocal(
  run: LocalRun,
  wg: Float64Array,
  globalEpoch: number,
): { w: Float64Array; steps: number } {
  const { net, Z, y, d, optimizer: opt } = run
  const w = wg.slice()
  const grad = new Float64Array(net.size)
  const one = new Float64Array(run.dp ? net.size : 0)
  const order = Uint32Array.from(run.rows)
  const n = order.length
  let steps = 0

  const step = (batch: ArrayLike<number>, size: number, epoch: number) => {
    if (run.dp) {
      clippedGradientSum(net, w, Z, y, d, batch, run.dp.clipNorm, grad, one)
      const noise = gaussianSamples(net.size, run.dp.noiseMultiplier * run.dp.clipNorm)
      for (let j = 0; j < net.size; j++) grad[j] += noise[j]
    } else {
      grad.fill(0)
      for (let k = 0; k < batch.length; k++) {
        const r = batch[k]
        net.addGrad(w, grad, sigmoid(net.logit(w, Z.subarray(r * d, r * d + d))) - y[r])
      }
    }
    applyStep(opt, net, w, wg, grad, size, run.mu, epoch)
    steps++
  }

  for (let e = 0; e < run.epochs; e++) {
    const epoch = globalEpoch + e
    if (run.dp) {
      // Poisson sampling: each row joins each step's batch independently; divide by the expected batch size.
      const dp = run.dp
      const expected = dp.sampleRate * n
      const perEpoch = Math.max(1, Math.round(1 / dp.sampleRate))
      for (let s = 0; s < perEpoch; s++)
        step(poissonSample(order, dp.sampleRate, dp.uniform), expected, epoch)
      continue
    }
    shuffleInPlace(order, run.rng)
    for (let b = 0; b < n; b += run.batchSize) {
      const end = Math.min(n, b + run.batchSize)
      step(order.subarray(b, end), end - b, epoch)
    }
  }
  return { w, steps }
}

/** The rows of `rows` that each join a batch independently with probability `rate` (Poisson sampling). */
export function poissonSample(rows: Uint32Array, rate: number, uniform: () => number): number[] {
  const batch: number[] = []
  for (let k = 0; k < rows.length; k++) if (uniform() < rate) batch.push(rows[k])
  return batch
}

/**
 * grad ← Σ over `batch` of each row's log-loss gradient clipped to L2 norm `clipNorm` (DP-SGD's bounded
 * per-example contribution); `scratch` is a buffer of the same size.
 */
export function clippedGradientSum(
  net: Net,
  w: Float64Array,
  Z: Float64Array,
  y: Uint8Array,
  d: number,
  batch: ArrayLike<number>,
  clipNorm: number,
  grad: Float64Array,
  scratch: Float64Array,
): void {
  grad.fill(0)
  for (let k = 0; k < batch.length; k++) {
    const r = batch[k]
    const err = sigmoid(net.logit(w, Z.subarray(r * d, r * d + d))) - y[r]
    scratch.fill(0)
    net.addGrad(w, scratch, err)
    let norm = 0
    for (let j = 0; j < scratch.length; j++) norm += scratch[j] * scratch[j]
    norm = Math.sqrt(norm)
    const f = norm > clipNorm ? clipNorm / norm : 1
    for (let j = 0; j < scratch.length; j++) grad[j] += scratch[j] * f
  }
}

/** One optimiser step on the batch gradient sum `grad` of `size` rows (lr.ts SGD or mlp.ts Adam) plus FedProx. */
export function applyStep(
  opt: Optimizer,
  net: Net,
  w: Float64Array,
  wg: Float64Array,
  grad: Float64Array,
  size: number,
  mu: number,
  epoch: number,
): void {
  if (opt.kind === 'sgd') {
    const lr = opt.learningRate / Math.sqrt(1 + epoch)
    for (let k = 0; k < net.size; k++) {
      const g = grad[k] / size + (net.isWeight[k] ? opt.l2 * w[k] : 0) + mu * (w[k] - wg[k])
      w[k] -= lr * g
    }
    return
  }
  opt.step++
  const b1 = 0.9
  const b2 = 0.999
  const c1 = 1 - b1 ** opt.step
  const c2 = 1 - b2 ** opt.step
  for (let k = 0; k < net.size; k++) {
    const g = (grad[k] + (net.isWeight[k] ? opt.alpha * w[k] : 0)) / size + mu * (w[k] - wg[k])
    opt.m1[k] = b1 * opt.m1[k] + (1 - b1) * g
    opt.m2[k] = b2 * opt.m2[k] + (1 - b2) * g * g
    w[k] -= (opt.learningRate * (opt.m1[k] / c1)) / (Math.sqrt(opt.m2[k] / c2) + 1e-8)
  }
}
