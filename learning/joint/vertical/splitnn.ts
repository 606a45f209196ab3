/**
 * Split neural network (docs/vertical-nn.md): the pooled MLP of learning/models/mlp.ts (ReLU hidden layers,
 * sigmoid output, log-loss, L2 alpha, Adam, early stopping) cut after the first layer's linear map.
 *
 * The first layer W1·x + b1 is split by columns: each party p holds W1_p (h1 × d_p) and sends the cut-layer
 * partial pre-activations z_p = W1_p·x_p of a batch to the label holder (masked so that only their sum over
 * the feature holders is revealed, masked-sum.ts), which adds them and b1 and runs the
 * rest of the network (ReLU, further layers, loss) on its own. It returns δ1 = ∂loss/∂(Σ z) for the batch to
 * every feature holder, which updates W1_p with Adam. The model is therefore exactly the pooled MLP's
 * architecture; the joint math equals pooled training step for step, given the same initial weights.
 *
 * Privacy choices: each party draws its own W1_p from the CSPRNG (a public-seed initialisation would let the
 * label holder invert z_p = W1_p·x_p in the first batch); the validation split for early stopping is a seeded
 * split independent of the labels (a stratified split with a public seed would reveal label information to
 * whoever knows which rows it put aside). What crosses the cut is still informative: see the docs.
 */
import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'
import { stratifiedSplitIndices } from '../../data/split.ts'
import { sigmoid } from '../../models/math.ts'
import type { Preprocessing } from '../../models/types.ts'
import { applyPreprocessing, fitPreprocessing } from '../../preprocess/scale.ts'
import { createRng, type Rng, shuffleInPlace } from '../../random.ts'
import type { JointContext, LocalData, ModelPart, VerticalAlgorithm } from '../types.ts'
import { checkAborted, ERR_JOINT_DATA, exchangeShapes, type PartyShape } from './common.ts'
import { MaskedSum } from './masked-sum.ts'
import { nonNegative, parseParams, positive, positiveInt } from './params.ts'
import { badMessage, f64ToBytes, recvF64 } from './wire.ts'

export const SPLITNN_NAME = 'vertical-split-nn'

const Params = z
  .object({
    /** Hidden widths; the first is the cut layer (default [32, 16], as learning/models/mlp.ts). */
    hidden: z.array(positiveInt).min(1).max(8).default([32, 16]),
    learningRate: positive.default(1e-3),
    batchSize: positiveInt.default(200),
    alpha: nonNegative.default(1e-4),
    maxEpochs: positiveInt.default(60),
    patience: positiveInt.default(5),
    validationFraction: z.number().gt(0).lt(0.5).default(0.1),
    seed: z.number().int().optional(),
    /** Each party standardises its own columns (fitted on its rows), as the plaintext MLP does. */
    standardize: z.boolean().default(true),
    /**
     * Reproduce learning/models/mlp.ts step for step (its seeded initial weights and stratified validation
     * split): for tests and benchmarks on non-sensitive data only — it lets the label holder invert the first
     * batch's cut activations and tells feature holders a label-derived split (docs/vertical-nn.md).
     */
    reproducible: z.boolean().default(false),
  })
  .strict()
type NnParams = z.output<typeof Params>

/** A dense layer: W (out × in, row-major) and b. */
interface Dense {
  W: Float64Array
  b: Float64Array
  nin: number
  nout: number
}

/** Adam state of one parameter array (β1 0.9, β2 0.999, ε 1e-8, as mlp.ts). */
class Adam {
  readonly m1: Float64Array
  readonly m2: Float64Array
  constructor(n: number) {
    this.m1 = new Float64Array(n)
    this.m2 = new Float64Array(n)
  }
  /** w -= lr·m̂/(√v̂ + ε) with g = (grad + decay·w)/size; `step` is the shared 1-based step count. */
  update(w: Float64Array, grad: Float64Array, size: number, decay: number, lr: number, step: number): void {
    const c1 = 1 - 0.9 ** step
    const c2 = 1 - 0.999 ** step
    for (let k = 0; k < w.length; k++) {
      const g = (grad[k] + decay * w[k]) / size
      this.m1[k] = 0.9 * this.m1[k] + 0.1 * g
      this.m2[k] = 0.999 * this.m2[k] + 0.001 * g * g
      w[k] -= (lr * (this.m1[k] / c1)) / (Math.sqrt(this.m2[k] / c2) + 1e-8)
    }
  }
}

/** Glorot-uniform values in [-bound, bound] from the CSPRNG (private initial weights). */
function privateUniform(n: number, bound: number): Float64Array {
  const u = new Uint32Array(randomBytes(4 * n).buffer.slice(0))
  return Float64Array.from(u, (v) => (2 * (v / 4294967296) - 1) * bound)
}

/**
 * Train/validation rows (both sorted). Default: a seeded split independent of the labels, computed by every
 * party alone. `reproducible`: mlp.ts's stratified split, computed by the label holder, which sends the
 * validation rows to the others.
 */
async function splitRows(
  ctx: JointContext,
  p: NnParams,
  rows: number,
  y: Uint8Array | undefined,
): Promise<{ train: Uint32Array; val: Uint32Array }> {
  const seed = (p.seed ?? ctx.seed) ^ 0x5eed
  let val: Uint32Array
  if (!p.reproducible) {
    const idx = new Uint32Array(rows).map((_, i) => i)
    shuffleInPlace(idx, createRng(seed))
    val = idx.slice(0, Math.round(rows * p.validationFraction)).sort()
  } else if (y) {
    val = stratifiedSplitIndices(y, p.validationFraction, seed).test
    const bytes = new Uint8Array(val.buffer, val.byteOffset, val.byteLength)
    const others = ctx.channel.parties.filter((q) => q !== ctx.self)
    await Promise.all(others.map((q) => ctx.channel.send(q, tag(ctx, 'val'), bytes)))
  } else {
    const t = tag(ctx, 'val')
    const bytes = await ctx.channel.recv(ctx.labelHolder, t)
    if (bytes.byteLength % 4 !== 0) throw badMessage(ctx.labelHolder, t, 'not a list of row indices')
    val = new Uint32Array(bytes.slice().buffer)
    if (val.some((r, i) => r >= rows || (i > 0 && r <= val[i - 1]))) {
      throw badMessage(ctx.labelHolder, t, 'row indices out of range or unsorted')
    }
  }
  const isVal = new Uint8Array(rows)
  for (const r of val) isVal[r] = 1
  const train = new Uint32Array(rows - val.length)
  for (let r = 0, k = 0; r < rows; r++) if (!isVal[r]) train[k++] = r
  if (train.length === 0 || val.length === 0) {
    throw new SyndicateError(ERR_JOINT_DATA, `${rows} rows are too few for a validation split`)
  }
  return { train, val }
}

/** A party's initial weights and the generator of its epoch shuffles. */
interface Init {
  /** This party's block of W1 (h1 × d_p). */
  W1: Float64Array
  /** Label holder: b1 (layers[0].b) and the layers above the cut. */
  layers: Dense[]
  shuffle: Rng
}

/**
 * Glorot-uniform initial weights as mlp.ts (gain 6 for ReLU layers, 2 for the output). W1_p and b1 come from
 * the CSPRNG; the layers above the cut from the seed. `reproducible`: everything from the seed in mlp.ts's
 * order (W1 over the pooled columns, then b1, W2, b2, …) and the shuffles from the same generator after it.
 */
function initialWeights(ctx: JointContext, p: NnParams, shapes: Map<string, PartyShape>, seed: number): Init {
  const widths = [...shapes.values()].map((q) => q.d)
  const dTotal = widths.reduce((a, b) => a + b, 0)
  const sizes = [dTotal, ...p.hidden, 1]
  const parties = [...shapes.keys()]
  const me = parties.indexOf(ctx.self)
  const offset = widths.slice(0, me).reduce((a, b) => a + b, 0)
  const d = widths[me]
  const h1 = sizes[1]
  const rng = createRng(seed)
  const bound = (l: number) => Math.sqrt((l === sizes.length - 1 ? 2 : 6) / (sizes[l - 1] + sizes[l]))
  const draw = (k: number, b: number) => Float64Array.from({ length: k }, () => (2 * rng.next() - 1) * b)
  let W1: Float64Array
  let b1: Float64Array
  if (p.reproducible) {
    const full = draw(h1 * dTotal, bound(1))
    W1 = new Float64Array(h1 * d)
    for (let o = 0; o < h1; o++) W1.set(full.subarray(o * dTotal + offset, o * dTotal + offset + d), o * d)
    b1 = draw(h1, bound(1))
  } else {
    W1 = privateUniform(h1 * d, bound(1))
    b1 = privateUniform(h1, bound(1))
  }
  const layers: Dense[] = [{ W: new Float64Array(0), b: b1, nin: 0, nout: h1 }]
  for (let l = 2; l < sizes.length; l++) {
    const W = draw(sizes[l] * sizes[l - 1], bound(l))
    layers.push({ W, b: draw(sizes[l], bound(l)), nin: sizes[l - 1], nout: sizes[l] })
  }
  return { W1, layers, shuffle: p.reproducible ? rng : createRng(seed ^ 0x0de7) }
}

/** z (m × h) = rows `idx` of X (n × d) times Wᵀ (W is h × d). */
function cutForward(
  X: Float64Array,
  d: number,
  W: Float64Array,
  h: number,
  idx: ArrayLike<number>,
): Float64Array {
  const m = idx.length
  const z = new Float64Array(m * h)
  for (let k = 0; k < m; k++) {
    const xo = idx[k] * d
    for (let o = 0; o < h; o++) {
      let s = 0
      const wo = o * d
      for (let j = 0; j < d; j++) s += W[wo + j] * X[xo + j]
      z[k * h + o] = s
    }
  }
  return z
}

/** grad (h × d) += δᵀ (h × m) · X rows `idx`. */
function cutBackward(
  X: Float64Array,
  d: number,
  delta: Float64Array,
  h: number,
  idx: ArrayLike<number>,
  grad: Float64Array,
): void {
  grad.fill(0)
  for (let k = 0; k < idx.length; k++) {
    const xo = idx[k] * d
    for (let o = 0; o < h; o++) {
      const e = delta[k * h + o]
      if (e === 0) continue
      const go = o * d
      for (let j = 0; j < d; j++) grad[go + j] += e * X[xo + j]
    }
  }
}

interface BottomPart {
  preprocessing: Preprocessing
  /** W1_p, h1 × d_p row-major. */
  W: number[]
  h1: number
}

interface TopPart extends BottomPart {
  b1: number[]
  /** Layers after the cut: weights[o][i] and bias, as learning/models/types.ts DenseLayer. */
  layers: { weights: number[][]; bias: number[] }[]
}

const tag = (ctx: JointContext, what: string) => `${ctx.tagPrefix}/splitnn/${what}`

export const splitNeuralNet: VerticalAlgorithm = {
  name: SPLITNN_NAME,

  async train(ctx: JointContext, data: LocalData): Promise<ModelPart> {
    const p = parseParams(SPLITNN_NAME, Params, ctx.params)
    const shapes = await exchangeShapes(ctx, data, 'splitnn')
    const n = data.rows
    const d = data.features.length
    const seed = p.seed ?? ctx.seed
    const { train, val } = await splitRows(ctx, p, n, data.y)
    const preprocessing = fitPreprocessing(data.X, n, d, { standardize: p.standardize, impute: false })
    const X = applyPreprocessing(preprocessing, data.X, n, d)
    const h1 = p.hidden[0]
    const init = initialWeights(ctx, p, shapes, seed)
    const ctl =
      ctx.self === ctx.labelHolder
        ? await trainTop(ctx, p, X, d, init, train, val, data.y as Uint8Array)
        : await trainBottom(ctx, p, X, d, init, train, val)
    const top = ctx.self === ctx.labelHolder
    const bottom: BottomPart = { preprocessing, W: Array.from(ctl.W1), h1 }
    return {
      algorithm: SPLITNN_NAME,
      params: top
        ? ({ ...bottom, ...(ctl.top as Omit<TopPart, keyof BottomPart>) } satisfies TopPart)
        : bottom,
      features: [...data.features],
    }
  },

  async predict(ctx, part, data) {
    const q = part.params as BottomPart
    const d = data.features.length
    if (
      !q ||
      !Array.isArray(q.W) ||
      q.W.length !== q.h1 * d ||
      part.features.some((f, j) => f !== data.features[j])
    ) {
      throw new SyndicateError(
        ERR_JOINT_DATA,
        `${ctx.self}: the model part does not match features [${data.features.join(', ')}]`,
      )
    }
    const X = applyPreprocessing(q.preprocessing, data.X, data.rows, d)
    const all = new Uint32Array(data.rows).map((_, i) => i)
    const z = cutForward(X, d, Float64Array.from(q.W), q.h1, all)
    const sum = await MaskedSum.create(ctx, tag(ctx, 'predict/sum'))
    const t = tag(ctx, 'predict/z')
    if (ctx.self !== ctx.labelHolder) {
      await sum.send(t, z)
      return null
    }
    const others = await sum.receive(t, z.length)
    for (let i = 0; i < z.length; i++) z[i] += others[i]
    const tp = q as TopPart
    const layers = [
      { W: new Float64Array(0), b: Float64Array.from(tp.b1), nin: 0, nout: q.h1 },
      ...tp.layers.map((l) => ({
        W: Float64Array.from(l.weights.flat()),
        b: Float64Array.from(l.bias),
        nin: l.weights[0].length,
        nout: l.bias.length,
      })),
    ]
    return topForward(layers, z, data.rows).logit.map(sigmoid)
  },
}

interface Forward {
  /** acts[l]: m × width of layer l's output (acts[0] = ReLU(Σz + b1)); logit m. */
  acts: Float64Array[]
  logit: Float64Array
}

/** The label holder's part of the forward pass from the summed cut pre-activations. layers[0] holds b1 only. */
function topForward(layers: Dense[], zsum: Float64Array, m: number): Forward {
  const h1 = layers[0].nout
  const a0 = new Float64Array(m * h1)
  for (let k = 0; k < m; k++) {
    for (let o = 0; o < h1; o++) {
      const v = zsum[k * h1 + o] + layers[0].b[o]
      a0[k * h1 + o] = Math.max(v, 0)
    }
  }
  const acts = [a0]
  for (let l = 1; l < layers.length; l++) {
    const { W, b, nin, nout } = layers[l]
    const prev = acts[l - 1]
    const out = new Float64Array(m * nout)
    const last = l === layers.length - 1
    for (let k = 0; k < m; k++) {
      for (let o = 0; o < nout; o++) {
        let v = b[o]
        for (let i = 0; i < nin; i++) v += W[o * nin + i] * prev[k * nin + i]
        out[k * nout + o] = last || v > 0 ? v : 0
      }
    }
    acts.push(out)
  }
  return { acts, logit: acts.pop() as Float64Array }
}

async function trainTop(
  ctx: JointContext,
  p: NnParams,
  X: Float64Array,
  d: number,
  init: Init,
  train: Uint32Array,
  val: Uint32Array,
  y: Uint8Array,
): Promise<{ W1: Float64Array; top: Omit<TopPart, keyof BottomPart> }> {
  const ch = ctx.channel
  const others = ch.parties.filter((q) => q !== ctx.self)
  const { W1, layers } = init
  const h1 = p.hidden[0]
  // [W1, b1, W2, b2, …]: layer l >= 1 has its weights at 2l and its bias at 2l + 1
  const params = [W1, layers[0].b, ...layers.slice(1).flatMap((l) => [l.W, l.b])]
  const adam = params.map((w) => new Adam(w.length))
  const grads = params.map((w) => new Float64Array(w.length))
  const decays = params.map((_, i) => (i % 2 === 0 ? p.alpha : 0)) // L2 on weights, not biases
  const { shuffle } = init
  const order = Uint32Array.from(train)
  let best = params.map((w) => w.slice())
  let bestLoss = Number.POSITIVE_INFINITY
  let since = 0
  let step = 0
  const sum = await MaskedSum.create(ctx, tag(ctx, 'sum'))
  const sumCut = async (idx: Uint32Array, what: string) => {
    const z = cutForward(X, d, W1, h1, idx)
    const zq = await sum.receive(tag(ctx, what), z.length)
    for (let i = 0; i < z.length; i++) z[i] += zq[i]
    return z
  }
  for (let epoch = 0; epoch < p.maxEpochs && since < p.patience; epoch++) {
    shuffleInPlace(order, shuffle)
    for (let start = 0, b = 0; start < order.length; start += p.batchSize, b++) {
      checkAborted(ctx)
      const idx = order.subarray(start, Math.min(order.length, start + p.batchSize))
      const m = idx.length
      const f = topForward(layers, await sumCut(idx, `e${epoch}/b${b}/z`), m)
      // backward: δ at the output is σ(logit) − y; walk down to the cut
      let delta = Float64Array.from(f.logit, (v, k) => sigmoid(v) - y[idx[k]])
      for (let l = layers.length - 1; l >= 1; l--) {
        const { W, nin, nout } = layers[l]
        const a = f.acts[l - 1]
        const gW = grads[2 * l]
        const gb = grads[2 * l + 1]
        gW.fill(0)
        gb.fill(0)
        const prev = new Float64Array(m * nin)
        for (let k = 0; k < m; k++) {
          for (let o = 0; o < nout; o++) {
            const e = delta[k * nout + o]
            if (e === 0) continue
            gb[o] += e
            for (let i = 0; i < nin; i++) {
              gW[o * nin + i] += e * a[k * nin + i]
              prev[k * nin + i] += W[o * nin + i] * e
            }
          }
          for (let i = 0; i < nin; i++) if (a[k * nin + i] <= 0) prev[k * nin + i] = 0
        }
        delta = prev
      }
      // delta is now ∂loss/∂(Σz) (m × h1, zero where the ReLU was off); b1's gradient is its column sum
      const gb1 = grads[1]
      gb1.fill(0)
      for (let k = 0; k < m; k++) for (let o = 0; o < h1; o++) gb1[o] += delta[k * h1 + o]
      const wire = f64ToBytes(delta)
      await Promise.all(others.map((q) => ch.send(q, tag(ctx, `e${epoch}/b${b}/delta`), wire)))
      cutBackward(X, d, delta, h1, idx, grads[0])
      step++
      for (let i = 0; i < params.length; i++)
        adam[i].update(params[i], grads[i], m, decays[i], p.learningRate, step)
    }
    const f = topForward(layers, await sumCut(val, `e${epoch}/val`), val.length)
    let loss = 0
    for (let k = 0; k < val.length; k++) {
      const pr = Math.min(1 - 1e-15, Math.max(1e-15, sigmoid(f.logit[k])))
      loss -= y[val[k]] === 1 ? Math.log(pr) : Math.log(1 - pr)
    }
    loss /= val.length
    const improved = loss < bestLoss - 1e-5
    if (improved) {
      bestLoss = loss
      best = params.map((w) => w.slice())
      since = 0
    } else {
      since++
    }
    const stop = epoch + 1 >= p.maxEpochs || since >= p.patience
    const msg = Uint8Array.of((improved ? 1 : 0) | (stop ? 2 : 0))
    await Promise.all(others.map((q) => ch.send(q, tag(ctx, `e${epoch}/ctl`), msg)))
    ctx.progress({
      phase: 'train',
      done: epoch + 1,
      total: p.maxEpochs,
      message: `validation log-loss ${loss.toFixed(5)}`,
    })
  }
  const [bW1, bb1, ...rest] = best
  const top: Omit<TopPart, keyof BottomPart> = { b1: Array.from(bb1), layers: [] }
  for (let l = 1; l < layers.length; l++) {
    const { nin, nout } = layers[l]
    const W = rest[2 * (l - 1)]
    top.layers.push({
      weights: Array.from({ length: nout }, (_, o) => Array.from(W.subarray(o * nin, (o + 1) * nin))),
      bias: Array.from(rest[2 * (l - 1) + 1]),
    })
  }
  return { W1: bW1, top }
}

async function trainBottom(
  ctx: JointContext,
  p: NnParams,
  X: Float64Array,
  d: number,
  init: Init,
  train: Uint32Array,
  val: Uint32Array,
): Promise<{ W1: Float64Array; top: undefined }> {
  const { W1 } = init
  const ch = ctx.channel
  const lh = ctx.labelHolder
  const h1 = p.hidden[0]
  const adam = new Adam(W1.length)
  const grad = new Float64Array(W1.length)
  const { shuffle } = init
  const order = Uint32Array.from(train)
  const sum = await MaskedSum.create(ctx, tag(ctx, 'sum'))
  let best = W1.slice()
  let step = 0
  for (let epoch = 0; epoch < p.maxEpochs; epoch++) {
    shuffleInPlace(order, shuffle)
    for (let start = 0, b = 0; start < order.length; start += p.batchSize, b++) {
      checkAborted(ctx)
      const idx = order.subarray(start, Math.min(order.length, start + p.batchSize))
      await sum.send(tag(ctx, `e${epoch}/b${b}/z`), cutForward(X, d, W1, h1, idx))
      const delta = await recvF64(ch, lh, tag(ctx, `e${epoch}/b${b}/delta`), idx.length * h1)
      cutBackward(X, d, delta, h1, idx, grad)
      step++
      adam.update(W1, grad, idx.length, p.alpha, p.learningRate, step)
    }
    await sum.send(tag(ctx, `e${epoch}/val`), cutForward(X, d, W1, h1, val))
    const t = tag(ctx, `e${epoch}/ctl`)
    const ctl = await ch.recv(lh, t)
    if (ctl.byteLength !== 1 || ctl[0] > 3) throw badMessage(lh, t, 'bad control byte')
    if (ctl[0] & 1) best = W1.slice()
    if (ctl[0] & 2) break
  }
  return { W1: best, top: undefined }
}
