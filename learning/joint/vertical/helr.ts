/**
 * HE vertical logistic regression (mode `he`), the shape of FATE's hetero-LR without an arbiter
 * (docs/vertical-lr.md). Each party keeps its own weights in the clear; per mini-batch (the seeded order of
 * learning/models/lr.ts):
 *  1. every feature holder p sends its partial logits u_p = X_p,B·w_p to the label holder, masked so that only
 *     their sum over the feature holders is revealed (masked-sum.ts; a documented leak);
 *  2. the label holder computes the exact residuals d = σ(Σ u + b) − y, updates its own weights, and sends
 *     [[d]] (BFV, fixed point, replicated into k = ⌊slots/|B|⌋ blocks so one ciphertext serves k features);
 *  3. feature holder p multiplies [[d]] by its feature columns (plaintext, k columns per ciphertext, no
 *     rotation) and adds a mask whose slots are uniform mod t with a block sum S_j only p knows;
 *  4. the label holder decrypts and returns the block sums Σ_i d_i·x_ij + S_j (uniform: it learns nothing);
 *  5. p removes S_j and updates w_p with its gradient.
 * BFV rather than CKKS: the masks must hide every slot exactly (uniform mod t); a CKKS mask hides only
 * statistically. Gradients are exact up to the fixed-point rounding of d and x (2^-20).
 */
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'
import { HeEvaluator, HeKeyOwner } from '../../../crypto/he/index.ts'
import { centre, zeroSumMask } from '../../../crypto/he/mask.ts'
import { sigmoid } from '../../models/math.ts'
import type { JointContext, LocalData, ModelPart, VerticalAlgorithm } from '../types.ts'
import {
  batchSizes,
  checkAborted,
  clipped,
  epochOrders,
  exchangeShapes,
  type LinearPart,
  linearPredict,
  type PartyShape,
} from './common.ts'
import { MaskedSum } from './masked-sum.ts'
import { ERR_JOINT_PARAMS, nonNegative, parseParams, positive, positiveInt } from './params.ts'
import { badMessage } from './wire.ts'

export const HELR_NAME = 'vertical-he-lr'
const PRESET = 'bfv-8192'
/** Fixed-point bits of d and x: |Σ_i d_i·x_ij| ≤ |B|·clip·2^40, kept ≤ 2^57 (below t/2 ≈ 2^59) by MAX_SPREAD. */
const FRAC = 20
const MAX_SPREAD = 2 ** 17

const Params = z
  .object({
    epochs: positiveInt.default(20),
    batchSize: positiveInt.max(8192).default(1024),
    learningRate: positive.default(0.5),
    l2: nonNegative.optional(),
    seed: z.number().int().optional(),
    clip: positive.max(64).default(6),
  })
  .strict()
type HelrParams = z.output<typeof Params>

export const heLogisticRegression: VerticalAlgorithm = {
  name: HELR_NAME,

  async train(ctx: JointContext, data: LocalData): Promise<ModelPart> {
    const p = parseParams(HELR_NAME, Params, ctx.params)
    if (p.batchSize * p.clip > MAX_SPREAD) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        `batchSize × clip = ${p.batchSize * p.clip} exceeds ${MAX_SPREAD}: encrypted gradient sums could wrap; lower one of them`,
      )
    }
    const shapes = await exchangeShapes(ctx, data, 'helr')
    const X = clipped(data.X, p.clip)
    const weights =
      ctx.self === ctx.labelHolder
        ? await trainLabelHolder(ctx, p, data, X, shapes)
        : await trainFeatureHolder(ctx, p, data, X)
    const params: LinearPart = {
      weights: Array.from(weights.subarray(0, data.features.length)),
      clip: p.clip,
      ...(ctx.self === ctx.labelHolder ? { bias: weights[data.features.length] } : {}),
    }
    return { algorithm: HELR_NAME, params, features: [...data.features] }
  },

  predict(ctx, part, data) {
    return linearPredict(ctx, part, data, 'helr')
  },
}

const tagOf = (ctx: JointContext, e: number, b: number, what: string) =>
  `${ctx.tagPrefix}/helr/e${e}/b${b}/${what}`

/** Rows of the batch `order[start..start+m)` of X (rows × d) times w, into a fresh vector. */
function partialLogits(
  X: Float64Array,
  d: number,
  w: Float64Array,
  order: Uint32Array,
  start: number,
  m: number,
) {
  const u = new Float64Array(m)
  for (let k = 0; k < m; k++) {
    const o = order[start + k] * d
    let s = 0
    for (let j = 0; j < d; j++) s += X[o + j] * w[j]
    u[k] = s
  }
  return u
}

async function trainLabelHolder(
  ctx: JointContext,
  p: HelrParams,
  data: LocalData,
  X: Float64Array,
  shapes: Map<string, PartyShape>,
): Promise<Float64Array> {
  const ch = ctx.channel
  const n = data.rows
  const d = data.features.length
  const y = data.y as Uint8Array
  const holders = ch.parties.filter((q) => q !== ctx.self)
  const sum = await MaskedSum.create(ctx, `${ctx.tagPrefix}/helr/sum`)
  const owner = await HeKeyOwner.generate(PRESET, { relin: false })
  try {
    const bundle = owner.publicBundle()
    await Promise.all(holders.map((q) => ch.send(q, `${ctx.tagPrefix}/helr/keys`, bundle)))
    const t = owner.evaluator.plainModulus
    const slots = owner.evaluator.slots
    const l2 = p.l2 ?? 1 / n
    const w = new Float64Array(d + 1)
    const g = new Float64Array(d + 1)
    let e = 0
    for (const order of epochOrders(n, p.epochs, p.seed ?? ctx.seed)) {
      const lr = p.learningRate / Math.sqrt(1 + e)
      let start = 0
      for (const [b, m] of batchSizes(n, p.batchSize).entries()) {
        checkAborted(ctx)
        const u = partialLogits(X, d, w, order, start, m)
        const others = await sum.receive(tagOf(ctx, e, b, 'u'), m)
        for (let k = 0; k < m; k++) u[k] += others[k]
        const blocks = Math.floor(slots / m)
        const resid = new Float64Array(m)
        const enc = new Array<number>(blocks * m)
        for (let k = 0; k < m; k++) {
          resid[k] = sigmoid(u[k] + w[d]) - y[order[start + k]]
          const v = Math.round(resid[k] * 2 ** FRAC)
          for (let c = 0; c < blocks; c++) enc[c * m + k] = v
        }
        const wire = owner.encryptToBytes(enc)
        await Promise.all(holders.map((q) => ch.send(q, tagOf(ctx, e, b, 'd'), wire)))
        g.fill(0)
        for (let k = 0; k < m; k++) {
          const o = order[start + k] * d
          for (let j = 0; j < d; j++) g[j] += resid[k] * X[o + j]
          g[d] += resid[k]
        }
        for (let j = 0; j < d; j++) w[j] -= lr * (g[j] / m + l2 * w[j])
        w[d] -= (lr * g[d]) / m
        // decrypt every holder's masked products and return the block sums
        for (const q of holders) {
          const dq = (shapes.get(q) as PartyShape).d
          const sums = new BigInt64Array(dq)
          for (let gi = 0; gi * blocks < dq; gi++) {
            const tg = tagOf(ctx, e, b, `g${gi}`)
            const v = owner.evaluator.deserialize(await ch.recv(q, tg))
            let slotsOut: BigInt64Array
            try {
              slotsOut = owner.decryptIntegers(v)
            } finally {
              v.free()
            }
            const cols = Math.min(blocks, dq - gi * blocks)
            if (slotsOut.length < cols * m) throw badMessage(q, tg, 'too few slots')
            for (let c = 0; c < cols; c++) {
              let s = 0n
              for (let k = 0; k < m; k++) s += slotsOut[c * m + k]
              sums[gi * blocks + c] = centre(s, t)
            }
          }
          await ch.send(q, tagOf(ctx, e, b, 'sums'), new Uint8Array(sums.buffer))
        }
        start += m
        ctx.progress({ phase: 'train', done: e * n + start, total: p.epochs * n })
      }
      e++
    }
    return w
  } finally {
    owner.free()
  }
}

async function trainFeatureHolder(
  ctx: JointContext,
  p: HelrParams,
  data: LocalData,
  X: Float64Array,
): Promise<Float64Array> {
  const ch = ctx.channel
  const lh = ctx.labelHolder
  const n = data.rows
  const d = data.features.length
  const sum = await MaskedSum.create(ctx, `${ctx.tagPrefix}/helr/sum`)
  const ev = await HeEvaluator.fromBundle(await ch.recv(lh, `${ctx.tagPrefix}/helr/keys`))
  try {
    if (ev.preset !== PRESET || ev.hasRelinKeys || ev.galoisSteps.length > 0) {
      throw badMessage(
        lh,
        `${ctx.tagPrefix}/helr/keys`,
        `expected a ${PRESET} bundle without evaluation keys`,
      )
    }
    const t = ev.plainModulus
    const scale = 2 ** FRAC
    const Xq = X.map((v) => Math.round(v * scale))
    const l2 = p.l2 ?? 1 / n
    const w = new Float64Array(d)
    let e = 0
    for (const order of epochOrders(n, p.epochs, p.seed ?? ctx.seed)) {
      const lr = p.learningRate / Math.sqrt(1 + e)
      let start = 0
      for (const [b, m] of batchSizes(n, p.batchSize).entries()) {
        checkAborted(ctx)
        await sum.send(tagOf(ctx, e, b, 'u'), partialLogits(X, d, w, order, start, m))
        const blocks = Math.floor(ev.slots / m)
        const dt = tagOf(ctx, e, b, 'd')
        const enc = ev.deserialize(await ch.recv(lh, dt))
        const maskSums = new BigInt64Array(d)
        try {
          if (enc.length !== blocks * m)
            throw badMessage(lh, dt, `vector of ${enc.length} slots, expected ${blocks * m}`)
          for (let gi = 0; gi * blocks < d; gi++) {
            const cols = Math.min(blocks, d - gi * blocks)
            const plain = new Array<number>(blocks * m).fill(0)
            const mask = new BigInt64Array(blocks * m)
            for (let c = 0; c < cols; c++) {
              const j = gi * blocks + c
              for (let k = 0; k < m; k++) plain[c * m + k] = Xq[order[start + k] * d + j]
              // m uniform slots; their sum S_j = −(last entry of a zero-sum vector of m + 1) is uniform too
              const z = zeroSumMask(m + 1, t)
              mask.set(z.subarray(0, m), c * m)
              maskSums[j] = -z[m]
            }
            const prod = ev.multiplyPlain(enc, plain)
            const masked = ev.addPlain(prod, mask)
            prod.free()
            try {
              await ch.send(lh, tagOf(ctx, e, b, `g${gi}`), ev.serialize(masked))
            } finally {
              masked.free()
            }
          }
        } finally {
          enc.free()
        }
        const st = tagOf(ctx, e, b, 'sums')
        const bytes = await ch.recv(lh, st)
        if (bytes.byteLength !== 8 * d)
          throw badMessage(lh, st, `${bytes.byteLength} bytes, expected ${8 * d}`)
        const sums = new BigInt64Array(d)
        new Uint8Array(sums.buffer).set(bytes)
        for (let j = 0; j < d; j++) {
          const gj = Number(centre(sums[j] - maskSums[j], t)) / (scale * scale)
          w[j] -= lr * (gj / m + l2 * w[j])
        }
        start += m
      }
      e++
    }
    return w
  } finally {
    ev.free()
  }
}
