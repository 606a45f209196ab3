/**
 * Pieces shared by the vertical algorithms: the shape exchange every run starts with, the seeded batch order
 * (the same as learning/models/lr.ts, so a joint run follows the plaintext baseline's trajectory), feature
 * clipping and the joint scoring of linear models.
 */
import { SyndicateError } from '../../../crypto/errors.ts'
import { sigmoid } from '../../models/math.ts'
import { createRng, shuffleInPlace } from '../../random.ts'
import type { JointContext, LocalData, ModelPart } from '../types.ts'
import { MaskedSum } from './masked-sum.ts'
import { badMessage, jsonToBytes, recvJson } from './wire.ts'

export const ERR_JOINT_DATA = 'ERR_JOINT_DATA'

/** What every party announces at the start: its row count, feature count and whether it holds labels. */
export interface PartyShape {
  rows: number
  d: number
  label: boolean
}

/** Exchanges shapes with every party; checks that rows agree and that exactly the label holder has labels. */
export async function exchangeShapes(
  ctx: JointContext,
  data: LocalData,
  tag: string,
): Promise<Map<string, PartyShape>> {
  checkAborted(ctx)
  const ch = ctx.channel
  const mine: PartyShape = { rows: data.rows, d: data.features.length, label: data.y !== undefined }
  const others = ch.parties.filter((p) => p !== ctx.self)
  // announce first, so that a misplaced label fails every party, not only this one
  await Promise.all(others.map((p) => ch.send(p, `${ctx.tagPrefix}/${tag}/shape`, jsonToBytes(mine))))
  checkLocal(ctx, data)
  const shapes = new Map<string, PartyShape>()
  for (const p of ch.parties) {
    if (p === ctx.self) {
      shapes.set(p, mine)
      continue
    }
    const t = `${ctx.tagPrefix}/${tag}/shape`
    const s = (await recvJson(ch, p, t)) as PartyShape
    if (
      typeof s !== 'object' ||
      s === null ||
      !Number.isSafeInteger(s.rows) ||
      !Number.isSafeInteger(s.d) ||
      s.d < 0 ||
      typeof s.label !== 'boolean'
    ) {
      throw badMessage(p, t, 'bad shape header')
    }
    if (s.rows !== data.rows) {
      throw new SyndicateError(
        ERR_JOINT_DATA,
        `party ${p} has ${s.rows} aligned rows but ${ctx.self} has ${data.rows}; re-run the alignment (PSI) so every party holds the same rows`,
        { party: p },
      )
    }
    if (s.label !== (p === ctx.labelHolder)) {
      throw new SyndicateError(
        ERR_JOINT_DATA,
        `party ${p} ${s.label ? 'holds labels but is not' : 'holds no labels but is'} the label holder`,
        { party: p },
      )
    }
    shapes.set(p, s)
  }
  return shapes
}

function checkLocal(ctx: JointContext, data: LocalData): void {
  if (!ctx.channel.parties.includes(ctx.labelHolder)) {
    throw new SyndicateError(ERR_JOINT_DATA, `label holder ${ctx.labelHolder} is not a party of the job`)
  }
  if (
    !Number.isSafeInteger(data.rows) ||
    data.rows < 1 ||
    data.X.length !== data.rows * data.features.length
  ) {
    throw new SyndicateError(
      ERR_JOINT_DATA,
      `${ctx.self}: X has ${data.X.length} values, expected rows × features = ${data.rows} × ${data.features.length}`,
    )
  }
  if (data.X.some((v) => !Number.isFinite(v))) {
    throw new SyndicateError(
      ERR_JOINT_DATA,
      `${ctx.self}: features contain NaN or infinity; impute them first`,
    )
  }
  if ((ctx.self === ctx.labelHolder) !== (data.y !== undefined)) {
    throw new SyndicateError(
      ERR_JOINT_DATA,
      ctx.self === ctx.labelHolder
        ? `${ctx.self} is the label holder but has no labels`
        : `${ctx.self} is not the label holder and must not pass labels`,
    )
  }
  if (data.y && (data.y.length !== data.rows || data.y.some((v) => v > 1))) {
    throw new SyndicateError(ERR_JOINT_DATA, `labels must be ${data.rows} values of 0 or 1`)
  }
}

/**
 * The row order of every epoch: the permutation learning/models/lr.ts's SGD uses (createRng(seed), one
 * Fisher–Yates shuffle per epoch). Public (indices only): every party derives it from the job's seed.
 */
export function* epochOrders(rows: number, epochs: number, seed: number): Generator<Uint32Array> {
  const rng = createRng(seed)
  const order = new Uint32Array(rows)
  for (let i = 0; i < rows; i++) order[i] = i
  for (let e = 0; e < epochs; e++) {
    shuffleInPlace(order, rng)
    yield order
  }
}

/** Sizes of the mini-batches of one epoch (the last one may be smaller). */
export function batchSizes(rows: number, batch: number): number[] {
  const out: number[] = []
  for (let b = 0; b < rows; b += batch) out.push(Math.min(batch, rows - b))
  return out
}

/** A copy of X with every value clipped to [-clip, clip] (limits the logits the approximations must cover). */
export function clipped(X: Float64Array, clip: number): Float64Array {
  return X.map((v) => Math.min(clip, Math.max(-clip, v)))
}

export function checkAborted(ctx: JointContext): void {
  if (ctx.signal.aborted) {
    throw new SyndicateError('ERR_JOB_ABORTED', `${ctx.self}: the job was cancelled`, {
      reason: String(ctx.signal.reason),
    })
  }
}

/** A linear model's part: this party's weights (and, at the label holder, the bias) on clipped features. */
export interface LinearPart {
  weights: number[]
  bias?: number
  clip: number
}

/**
 * Joint scoring of a vertically split linear model: each feature holder computes its partial logit X_p·w_p
 * and sends it to the label holder (masked so that only the sum over feature holders is revealed,
 * masked-sum.ts), which adds its own, the bias and applies the sigmoid. The label holder learns the feature
 * holders' summed partial logits (docs/vertical-lr.md); nobody else learns anything.
 */
export async function linearPredict(
  ctx: JointContext,
  part: ModelPart,
  data: LocalData,
  tag: string,
): Promise<Float64Array | null> {
  const p = part.params as LinearPart
  const d = data.features.length
  if (
    !p ||
    !Array.isArray(p.weights) ||
    p.weights.length !== d ||
    part.features.some((f, j) => f !== data.features[j])
  ) {
    throw new SyndicateError(
      ERR_JOINT_DATA,
      `${ctx.self}: the model part expects features [${part.features.join(', ')}], got [${data.features.join(', ')}]`,
    )
  }
  const X = clipped(data.X, p.clip)
  const z = new Float64Array(data.rows)
  for (let i = 0; i < data.rows; i++) {
    let s = 0
    for (let j = 0; j < d; j++) s += X[i * d + j] * p.weights[j]
    z[i] = s
  }
  const sum = await MaskedSum.create(ctx, `${ctx.tagPrefix}/${tag}/predict`)
  const t = `${ctx.tagPrefix}/${tag}/partial`
  if (ctx.self !== ctx.labelHolder) {
    await sum.send(t, z)
    return null
  }
  const others = await sum.receive(t, data.rows)
  for (let i = 0; i < data.rows; i++) z[i] += others[i]
  const bias = p.bias ?? 0
  return z.map((v) => sigmoid(v + bias))
}
