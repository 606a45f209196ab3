/**
 * Secret-shared vertical logistic regression (mode `mpc`, docs/vertical-lr.md) on the MPC engine.
 *
 * Every data party shares its (clipped) feature block once and the label holder shares y; sharing costs no
 * traffic (pairwise PRG seeds). The weights live as shares for the whole run. Each mini-batch (the same
 * seeded order as learning/models/lr.ts's SGD) runs, entirely on shares:
 *   u = X_B·w → σ̃(u) (degree-5 polynomial, sigmoid-poly.ts) → r = σ̃(u) − y_B → g = X_Bᵀ·r
 *   → w ← w − lr_e·(g/|B| + l2·w)   (bias not penalised)
 * The two matrix products use, with a dealer, SecureML's masked-once design matrix (masked-dealer.ts: X − A is
 * opened once, a batch opens only w − b and r − b'); dealer-free, owned products on each party's own block
 * (`HeTripleSource.fixedMatrix`, crypto/mpc/he-fixed.ts): the block is never shared for the products, its owner
 * encrypts it once, and per epoch the peer's masks for w and r are multiplied into it homomorphically; online a
 * batch sends the block's share of w − β and r − β' to its owner. The bias column is public (all ones): its
 * products are local. Offline/online: every correlation of every batch of every epoch is generated before the
 * first step. At the end each party learns only its own block of weights; the label holder also the bias.
 */
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'
import { decodeFixed, encodeFixed, encodeFixedScalar } from '../../../crypto/fixed.ts'
import {
  type CorrelatedSource,
  type CorrelationRequest,
  DealerSource,
  type FixedMatrix,
  HeTripleSource,
  MpcSession,
  type OwnedTriple,
  receiveOutput,
  type SharedMatrix,
  sendInput,
} from '../../../crypto/mpc/index.ts'
import {
  type Ring,
  ringAdd,
  ringConcat,
  ringConst,
  ringMatmul,
  ringMul,
  ringNeg,
  ringScale,
  ringShl,
  ringShr,
  ringSub,
  ringTranspose,
} from '../../../crypto/mpc/ring.ts'
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
import {
  type BatchMasks,
  type CrossShares,
  gatherRows,
  MaskedMatrixDealer,
  type TruncShares,
} from './masked-dealer.ts'
import { ERR_JOINT_PARAMS, nonNegative, parseParams, positive, positiveInt } from './params.ts'
import { POLY_SHIFT, SIGMOID_POLY } from './sigmoid-poly.ts'

export const SSLR_NAME = 'vertical-ss-lr'
/** Batches whose dealer correlations are made together (a run is faster than one by one; memory stays bounded). */
const DEAL_AHEAD = 32
/** Extra fractional bits of the update's public factors (lr/|B| ≈ 5e-4 would keep only ~5 bits at 16). */
const UPDATE_BITS = 8

const Params = z
  .object({
    epochs: positiveInt.default(20),
    batchSize: positiveInt.default(1024),
    /** Initial step; epoch e uses learningRate/√(1+e) (as learning/models/lr.ts). */
    learningRate: positive.default(0.5),
    /** L2 on the mean loss; default 1/rows (scikit-learn's C = 1). */
    l2: nonNegative.optional(),
    /** Seed of the batch order; default the job's seed. */
    seed: z.number().int().optional(),
    /** Features are clipped to [-clip, clip] before training and scoring (keeps logits in the polynomial's range). */
    clip: positive.default(6),
    /** Correlated randomness: 'he' (dealer-free, two parties only) or 'dealer'. Default 'he' for two parties. */
    triples: z.enum(['he', 'dealer']).optional(),
    /** The dealing party for triples = 'dealer' (required then): it is trusted not to unmask (docs). */
    dealer: z.string().optional(),
    /**
     * The parties that run the MPC (>= 2); every other data holder only shares its block in and receives its
     * weights. Default: the label holder and one other data party (the dealer if it holds data), since every
     * extra computing party multiplies the online traffic.
     */
    computeParties: z.array(z.string()).min(2).optional(),
    fracBits: z.number().int().min(12).max(16).default(16),
  })
  .strict()
type SslrParams = z.output<typeof Params>

interface SslrPlan {
  /** The data parties (features or labels), in channel order: the column blocks of the shared X. */
  blocks: string[]
  /** Feature count per block. */
  dims: number[]
  /** The parties that run the MPC. */
  compute: string[]
  rows: number
  truncation: 'local' | 'exact'
}

export const ssLogisticRegression: VerticalAlgorithm = {
  name: SSLR_NAME,

  async train(ctx: JointContext, data: LocalData): Promise<ModelPart> {
    const p = parseParams(SSLR_NAME, Params, ctx.params)
    // the widest ring value, the update |X_Bᵀ·r|·lr/|B| ≤ 1.1·clip·lr at 3f + 8 bits, must stay below 2^62
    if (Math.log2(1.1 * p.learningRate * p.clip) + 3 * p.fracBits + UPDATE_BITS >= 62) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        `learningRate × clip = ${p.learningRate * p.clip} is too large for ${p.fracBits} fractional bits; lower one of them`,
      )
    }
    const shapes = await exchangeShapes(ctx, data, 'sslr')
    const triples = p.triples ?? (ctx.channel.parties.length === 2 ? 'he' : 'dealer')
    // The dealer can unmask everything it dealt for: trusting it is a decision the job spec must state.
    const dealer = p.dealer ?? ''
    if (triples === 'dealer' && !ctx.channel.parties.includes(dealer)) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        p.dealer === undefined
          ? `SS-LR with triples 'dealer' (the default for ${ctx.channel.parties.length} parties) needs params.dealer: name the party trusted to deal, best one without data (docs/vertical-lr.md)`
          : `dealer ${dealer} is not a party of the job`,
      )
    }
    const blocks = ctx.channel.parties.filter((q) => {
      const s = shapes.get(q) as PartyShape
      return s.d > 0 || s.label
    })
    const compute = computeParties(ctx, p, triples, dealer, blocks)
    const plan: SslrPlan = {
      blocks,
      dims: blocks.map((q) => (shapes.get(q) as PartyShape).d),
      compute,
      rows: data.rows,
      truncation: triples === 'he' ? 'local' : 'exact',
    }
    const requests = correlationPlan(plan, p)
    const batches = allBatches(plan.rows, p, ctx.seed)
    const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
    const maskedDealer = () =>
      MaskedMatrixDealer.create(ctx.channel, {
        dealer,
        computeParties: compute,
        tag: `${ctx.tagPrefix}/sslr/masks`,
        rows: plan.rows,
        cols: D1,
        bits: {
          u: p.fracBits + POLY_SHIFT,
          t2: p.fracBits,
          t4: p.fracBits,
          sig: 2 * p.fracBits,
          step: 2 * p.fracBits + UPDATE_BITS,
        },
      })
    if (!compute.includes(ctx.self)) {
      // An input party shares its block (and labels) into the computation and waits for its weights; an
      // external dealer deals the whole plan. A party can be both, or neither (then it has nothing to do).
      if (blocks.includes(ctx.self)) await sendInputs(ctx, plan, p, data)
      if (triples === 'dealer' && ctx.self === dealer) {
        ctx.progress({ phase: 'offline', message: `dealing ${requests.length} correlations` })
        const dealing = await createSource(ctx, triples, dealer, compute)
        await (dealing as DealerSource).serve(requests)
        const masks = await maskedDealer()
        masks.mask()
        for (const idx of batches) await masks.batch(idx)
      }
      return await receiveOwnBlock(ctx, plan, p, data)
    }
    const source = await createSource(ctx, triples, dealer, compute)
    const fixed: FixedMatrix[] = []
    try {
      const s = await MpcSession.create(ctx.channel, {
        source,
        parties: compute,
        fracBits: p.fracBits,
        truncation: plan.truncation,
        tag: `${ctx.tagPrefix}/sslr/mpc`,
      })
      ctx.progress({ phase: 'offline', message: `${requests.length} correlations (${triples})` })
      await source.prepare(requests)
      let program: BatchProgram
      const y = await shareLabels(ctx, s, plan, data)
      if (triples === 'he') {
        const own = encodeFixed(clipped(data.X, p.clip), p.fracBits)
        const owned = await ownedCorrelations(
          s,
          source as HeTripleSource,
          plan,
          own,
          batches,
          p.epochs,
          fixed,
        )
        program = localProgram(s, ownedProducts(s, plan, own, owned))
      } else {
        const X = await shareDesign(ctx, s, plan, p, data)
        program = await dealtProgram(s, X, D1, await maskedDealer(), batches)
      }
      const w = await trainShared(ctx, s, plan, p, y, program)
      return await revealOwnBlocks(ctx, s, plan, p, data, w)
    } finally {
      for (const f of fixed) f.dispose()
      if (source instanceof HeTripleSource) source.dispose()
    }
  },

  predict(ctx, part, data) {
    return linearPredict(ctx, part, data, 'sslr')
  },
}

/** Who computes (see Params.computeParties); 'he' triples need the two data parties themselves. */
function computeParties(
  ctx: JointContext,
  p: SslrParams,
  triples: 'he' | 'dealer',
  dealer: string,
  blocks: string[],
): string[] {
  const parties = ctx.channel.parties
  if (triples === 'he') {
    if (blocks.length !== 2 || p.computeParties?.some((q) => !blocks.includes(q))) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        `dealer-free triples ('he') work for exactly two computing parties that hold the data, this job has ${blocks.length} data parties; set triples: 'dealer' and name a dealer`,
      )
    }
    return blocks
  }
  if (p.computeParties) {
    const unknown = p.computeParties.filter((q) => !parties.includes(q))
    if (unknown.length || new Set(p.computeParties).size !== p.computeParties.length) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        `computeParties must name distinct parties of the job${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`,
      )
    }
    // channel order, so every party numbers them alike
    return parties.filter((q) => p.computeParties!.includes(q))
  }
  const second =
    blocks.includes(dealer) && dealer !== ctx.labelHolder ? dealer : blocks.find((q) => q !== ctx.labelHolder)
  const pair = [ctx.labelHolder, second ?? dealer]
  if (pair[1] === pair[0]) {
    throw new SyndicateError(
      ERR_JOINT_PARAMS,
      'SS-LR needs two computing parties; the job has one data party and no other dealer',
    )
  }
  return parties.filter((q) => pair.includes(q))
}

const inputTag = (ctx: JointContext, owner: string, what: string) =>
  `${ctx.tagPrefix}/sslr/input/${owner}/${what}`
const outputTag = (ctx: JointContext, owner: string) => `${ctx.tagPrefix}/sslr/output/${owner}`

/** An input party's block (clipped, fixed-point) and, at the label holder, its labels, shared into the MPC. */
async function sendInputs(ctx: JointContext, plan: SslrPlan, p: SslrParams, data: LocalData): Promise<void> {
  const sends = [
    sendInput(
      ctx.channel,
      plan.compute,
      inputTag(ctx, ctx.self, 'X'),
      encodeFixed(clipped(data.X, p.clip), p.fracBits),
    ),
  ]
  if (ctx.self === ctx.labelHolder) {
    sends.push(
      sendInput(
        ctx.channel,
        plan.compute,
        inputTag(ctx, ctx.self, 'y'),
        encodeFixed(Float64Array.from(data.y as Uint8Array), p.fracBits),
      ),
    )
  }
  await Promise.all(sends)
}

/** An input party's model part: its block of weights (and, at the label holder, the bias), opened to it. */
async function receiveOwnBlock(
  ctx: JointContext,
  plan: SslrPlan,
  p: SslrParams,
  data: LocalData,
): Promise<ModelPart> {
  if (!plan.blocks.includes(ctx.self))
    return { algorithm: SSLR_NAME, params: { weights: [], clip: p.clip }, features: [] }
  const d = data.features.length
  const holder = ctx.self === ctx.labelHolder
  const r = await receiveOutput(ctx.channel, plan.compute, outputTag(ctx, ctx.self), d + (holder ? 1 : 0))
  const v = decodeFixed(r, p.fracBits)
  const params: LinearPart = {
    weights: Array.from(v.subarray(0, d)),
    clip: p.clip,
    ...(holder ? { bias: v[d] } : {}),
  }
  return { algorithm: SSLR_NAME, params, features: [...data.features] }
}

async function createSource(
  ctx: JointContext,
  triples: 'he' | 'dealer',
  dealer: string,
  compute: string[],
): Promise<CorrelatedSource> {
  if (triples === 'he') {
    return HeTripleSource.create(ctx.channel, { parties: compute, tag: `${ctx.tagPrefix}/sslr/he` })
  }
  return DealerSource.create(ctx.channel, {
    dealer,
    computeParties: compute,
    tag: `${ctx.tagPrefix}/sslr/dealer`,
  })
}

/**
 * Every correlation the online phase takes from the engine's source, in order (the program below, batch by
 * batch): dealer-free, the sigmoid's three products (truncation is local); with a dealer, only the exact
 * truncation of the last weight update (everything else comes with the batch masks, masked-dealer.ts).
 */
function correlationPlan(plan: SslrPlan, p: Pick<SslrParams, 'epochs' | 'batchSize' | 'fracBits'>) {
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  if (plan.truncation === 'exact')
    return [{ kind: 'trunc', n: D1, f: 2 * p.fracBits + UPDATE_BITS }] as CorrelationRequest[]
  const out: CorrelationRequest[] = []
  for (let e = 0; e < p.epochs; e++) {
    for (const m of batchSizes(plan.rows, p.batchSize))
      for (let i = 0; i < 3; i++) out.push({ kind: 'mul', n: m })
  }
  return out
}

/** The shared n × (D+1) design matrix [X_1 | … | X_k | 1] (for the dealer's masked products). */
async function shareDesign(
  ctx: JointContext,
  s: MpcSession,
  plan: SslrPlan,
  p: SslrParams,
  data: LocalData,
): Promise<Ring> {
  const n = plan.rows
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const X = new BigUint64Array(n * D1)
  const shares = await Promise.all(
    plan.blocks.map((q, i) =>
      plan.compute.includes(q)
        ? s.share(q, n, plan.dims[i], q === s.self ? clipped(data.X, p.clip) : undefined)
        : s.receiveInput(q, n, plan.dims[i], inputTag(ctx, q, 'X')),
    ),
  )
  let col = 0
  for (const [i, d] of plan.dims.entries()) {
    const block = shares[i].share
    for (let r = 0; r < n; r++) X.set(block.subarray(r * d, r * d + d), r * D1 + col)
    col += d
  }
  if (s.index === 0) {
    const one = encodeFixedScalar(1, s.fracBits)
    for (let r = 0; r < n; r++) X[r * D1 + D1 - 1] = one
  }
  return X
}

function shareLabels(
  ctx: JointContext,
  s: MpcSession,
  plan: SslrPlan,
  data: LocalData,
): Promise<SharedMatrix> {
  const holder = ctx.labelHolder
  if (!plan.compute.includes(holder)) return s.receiveInput(holder, plan.rows, 1, inputTag(ctx, holder, 'y'))
  return Promise.resolve(
    s.share(holder, plan.rows, 1, holder === s.self ? Float64Array.from(data.y as Uint8Array) : undefined),
  )
}

/** The two secure matrix products of a batch, on ring shares at 2·fracBits (untruncated). */
interface BatchProducts {
  /** Shares of X_B·w for the batch rows `idx` (|B| values). */
  forward(idx: Uint32Array, w: Ring): Promise<Ring>
  /** Shares of X_Bᵀ·r for the rows of the last `forward` (D+1 values). */
  backward(r: Ring): Promise<Ring>
}

/** One party's feature block and its dealer-free correlations for every batch (training order). */
interface OwnedBlock {
  owner: string
  col: number
  d: number
  fwd: OwnedTriple[]
  bwd: OwnedTriple[]
}

/**
 * The offline phase of the owned products: each block's owner encrypts it once, then per epoch one exchange
 * per direction covers all of that epoch's batches. Both blocks run at the same time (each party is the owner
 * of one and the peer of the other), so two machines work in parallel.
 */
async function ownedCorrelations(
  s: MpcSession,
  source: HeTripleSource,
  plan: SslrPlan,
  own: Ring,
  batches: Uint32Array[],
  epochs: number,
  fixed: FixedMatrix[],
): Promise<OwnedBlock[]> {
  const blocks: OwnedBlock[] = []
  let col = 0
  for (const [i, owner] of plan.blocks.entries()) {
    const d = plan.dims[i]
    if (d > 0) blocks.push({ owner, col, d, fwd: [], bwd: [] })
    col += d
  }
  const perEpoch = batches.length / epochs
  await Promise.all(
    blocks.map(async (b) => {
      const f = await source.fixedMatrix(b.owner, b.owner === s.self ? own : undefined, plan.rows, b.d)
      fixed.push(f)
      for (let e = 0; e < epochs; e++) {
        const epoch = batches.slice(e * perEpoch, (e + 1) * perEpoch)
        b.fwd.push(...(await f.forward(epoch)))
        b.bwd.push(...(await f.backward(epoch)))
      }
    }),
  )
  return blocks
}

/**
 * Dealer-free products with each block owned by its party: X_B·w = Σ_blocks X_q,B·w_q + w_bias and
 * X_Bᵀ·r = [X_q,Bᵀ·r …; Σ r], the block products with the owned correlations (one message per block, from the
 * peer to the owner, all in one round), the bias terms local. Results at 2·fracBits like the other products.
 */
function ownedProducts(s: MpcSession, plan: SslrPlan, own: Ring, blocks: OwnedBlock[]): BatchProducts {
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const one = encodeFixedScalar(1, s.fracBits)
  let at = -1
  let mine: Ring = new BigUint64Array(0)
  let m = 0
  return {
    async forward(idx, w) {
      at++
      m = idx.length
      const block = blocks.find((b) => b.owner === s.self)
      mine = block ? gatherRows(own, idx, block.d) : mine
      const parts = await Promise.all(
        blocks.map((b) =>
          s.matmulOwnedRing(
            b.owner,
            b.owner === s.self ? mine : undefined,
            m,
            w.slice(b.col, b.col + b.d),
            b.d,
            1,
            b.fwd[at],
          ),
        ),
      )
      const bias = ringConst(m, BigInt.asUintN(64, w[D1 - 1] * one))
      return parts.reduce((u, v) => ringAdd(u, v), bias)
    },
    async backward(r) {
      const block = blocks.find((b) => b.owner === s.self)
      const mineT = block ? ringTranspose(mine, m, block.d) : undefined
      const parts = await Promise.all(
        blocks.map((b) =>
          s.matmulOwnedRing(b.owner, b.owner === s.self ? mineT : undefined, b.d, r, m, 1, b.bwd[at]),
        ),
      )
      const g = new BigUint64Array(D1)
      for (const [i, b] of blocks.entries()) g.set(parts[i], b.col)
      let sum = 0n
      for (const v of r) sum += v
      g[D1 - 1] = BigInt.asUintN(64, sum * one)
      return g
    },
  }
}

/**
 * The dealer-mode batch program: SecureML's products with X masked once (masked-dealer.ts: E = X − A is opened
 * at the start; X_B·w = E_B·w + A_B·(w − b) + A_B·b and X_Bᵀ·r = E_Bᵀ·r + A_Bᵀ·(r − b') + A_Bᵀ·b', opening
 * only w − b and r − b') and the sigmoid with fused truncations, five openings per batch:
 *  1. the previous update's truncation with w − s_step − b: w_new = w + C − R, and, since
 *     w_new − b = F + C + K⊙msb, X_B·w_new = E_B·w_new + A_B·(F + C) + A_B·b + (A_B·diag(msb))·K;
 *  2–4. the sigmoid's truncations (dealtSigmoid);
 *  5. σ̃'s truncation with s_sig + y_B − b': r = C' − R − y_B with C' = C + 0.5 public, so
 *     X_Bᵀ·r = E_Bᵀ·r + A_Bᵀ·(C' − F') − A_Bᵀ·b' + (diag(msb)·A_B)ᵀ·K.
 * The correlations are dealt DEAL_AHEAD batches at a time, in training order (from the PRG streams: no traffic
 * when the dealer computes), so memory holds at most that many batches' (≈ 0.6 MB per batch of 1,024 × 24), not
 * the run's; dealing in runs is faster than batch by batch (measured).
 */
async function dealtProgram(
  s: MpcSession,
  X: Ring,
  D1: number,
  dealer: MaskedMatrixDealer,
  batches: Uint32Array[],
): Promise<BatchProgram> {
  const A = dealer.mask()
  const ahead: BatchMasks[] = []
  let dealt = 0
  const [E] = await s.open([ringSub(X, A)])
  const f = s.fracBits
  const lead = s.index === 0
  const half = fixedAt(0.5, f)
  return {
    gBits: 2 * f,
    async gradient(idx, w, pending, yB) {
      if (ahead.length === 0) {
        for (const next of batches.slice(dealt, dealt + DEAL_AHEAD)) ahead.push(await dealer.batch(next))
        dealt += DEAL_AHEAD
      }
      const mk = ahead.shift() as BatchMasks
      const m = idx.length
      const EB = gatherRows(E, idx, D1)
      const AB = gatherRows(A, idx, D1)
      let u: Ring
      if (pending === undefined) {
        const [F] = await s.open([ringSub(w, mk.b)])
        u = ringAdd(ringMatmul(AB, F, m, D1, 1), mk.c)
      } else {
        const [c, F] = await s.open([
          ringAdd(biased(s, pending), mk.step.r),
          ringSub(ringSub(w, mk.step.s), mk.b),
        ])
        const st = truncationOf(c, mk.step, 2 * f + UPDATE_BITS)
        w = ringSub(lead ? ringAdd(w, st.C) : w, st.R)
        u = ringAdd(
          ringAdd(ringMatmul(AB, ringAdd(F, st.C), m, D1, 1), mk.c),
          ringMatmul(mk.stepCols, st.K, m, D1, 1),
        )
      }
      u = ringAdd(u, ringMatmul(EB, w, m, D1, 1))
      const sigRaw = await dealtSigmoid(s, u, mk)
      const [c, F] = await s.open([
        ringAdd(biased(s, sigRaw), mk.sig.r),
        ringSub(ringAdd(mk.sig.s, yB), mk.b2),
      ])
      const o = truncationOf(c, mk.sig, 2 * f)
      const C = ringAdd(o.C, ringConst(m, half))
      const r = ringSub(lead ? ringSub(C, o.R) : ringNeg(o.R), yB)
      // X_Bᵀ·r as row vectors rᵀ·X_B: no transpose needed
      const g = ringAdd(
        ringAdd(ringMatmul(r, EB, 1, m, D1), ringMatmul(ringSub(C, F), AB, 1, m, D1)),
        ringSub(ringMatmul(o.K, mk.sigRows, 1, m, D1), mk.c2),
      )
      return { w, g }
    },
  }
}

/** The dealer-free batch program: owned products, localSigmoid, every value truncated at once. */
function localProgram(s: MpcSession, products: BatchProducts): BatchProgram {
  const f = s.fracBits
  return {
    gBits: f,
    async gradient(idx, w, pending, yB) {
      const wNew = pending === undefined ? w : ringAdd(w, await s.truncateRing(pending, f + UPDATE_BITS))
      const sig = await localSigmoid(s, await products.forward(idx, wNew))
      return { w: wNew, g: await s.truncateRing(await products.backward(ringSub(sig, yB)), f) }
    },
  }
}

/** Row indices of every batch of every epoch, in training order (copies: epochOrders reuses its array). */
function allBatches(rows: number, p: SslrParams, jobSeed: number): Uint32Array[] {
  const out: Uint32Array[] = []
  for (const order of epochOrders(rows, p.epochs, p.seed ?? jobSeed)) {
    let start = 0
    for (const m of batchSizes(rows, p.batchSize)) {
      out.push(order.slice(start, start + m))
      start += m
    }
  }
  return out
}

/**
 * One mini-batch on shares: applies the previous batch's pending update (untruncated, at gBits + UPDATE_BITS
 * fractional bits) to w, then returns the new w and g = X_Bᵀ·(σ̃(X_B·w) − y_B) untruncated at `gBits`.
 */
interface BatchProgram {
  gBits: number
  gradient(idx: Uint32Array, w: Ring, pending: Ring | undefined, yB: Ring): Promise<{ w: Ring; g: Ring }>
}

const [A1, A3, A5] = SIGMOID_POLY
const fixedAt = (c: number, bits: number) => BigInt.asIntN(64, encodeFixedScalar(c, bits))

/**
 * The sigmoid with local (SecureML) truncation, dealer-free: t = u/2^(f+shift), σ̃ = 0.5 + t·(a1 + a3·t² +
 * a5·t⁴), three Beaver products, every value truncated as soon as possible (local truncation fails with
 * probability ~|x|/2^63, so values are kept small).
 */
async function localSigmoid(s: MpcSession, u: Ring): Promise<Ring> {
  const f = s.fracBits
  const lead = s.index === 0
  const m = u.length
  const t = await s.truncateRing(u, f + POLY_SHIFT)
  const t2 = await s.truncateRing(await s.mulRing(t, t), f)
  const t4 = await s.truncateRing(await s.mulRing(t2, t2), f)
  let q = await s.truncateRing(ringAdd(ringScale(t2, fixedAt(A3, f)), ringScale(t4, fixedAt(A5, f))), f)
  if (lead) q = ringAdd(q, ringConst(m, fixedAt(A1, f)))
  const sig = await s.truncateRing(await s.mulRing(t, q), f)
  return lead ? ringAdd(sig, ringConst(m, fixedAt(0.5, f))) : sig
}

/** A truncation after its opening: x >> bits = C − R, C public, R = s − K⊙msb this party's share. */
interface Opened {
  C: Ring
  K: Ring
  R: Ring
}

/** x + 2^62 (added once, by party 0): the value whose opening, masked by r, an exact truncation opens. */
function biased(s: MpcSession, x: Ring): Ring {
  return s.index === 0 ? ringAdd(x, ringConst(x.length, 1n << 62n)) : x
}

/**
 * The engine's exact truncation (MpcSession.truncateRing) split at its opening c = x + 2^62 + r: returns
 * C = (c >>> bits) − 2^(62−bits), K = (1 − msb(c))·2^(64−bits) and the share R = s − K⊙msb.
 */
function truncationOf(c: Ring, pair: TruncShares, bits: number): Opened {
  const n = c.length
  const C = ringSub(ringShr(c, bits), ringConst(n, 1n << BigInt(62 - bits)))
  const K = ringShl(ringSub(ringConst(n, 1n), ringShr(c, 63)), 64 - bits)
  return { C, K, R: ringSub(pair.s, ringMul(K, pair.msb)) }
}

async function openTruncation(s: MpcSession, x: Ring, pair: TruncShares, bits: number): Promise<Opened> {
  const [c] = await s.open([ringAdd(biased(s, x), pair.r)])
  return truncationOf(c, pair, bits)
}

/** Shares of y² (untruncated) for y = C − R: C² − 2C⊙R + R², with R² = s² − 2K⊙(s⊙msb) + K²⊙msb. */
function square(s: MpcSession, y: Opened, [sq, sm]: [Ring, Ring], msb: Ring): Ring {
  const R2 = ringAdd(ringSub(sq, ringScale(ringMul(y.K, sm), 2n)), ringMul(ringMul(y.K, y.K), msb))
  const z = ringSub(R2, ringScale(ringMul(y.C, y.R), 2n))
  return s.index === 0 ? ringAdd(z, ringMul(y.C, y.C)) : z
}

/** Shares of R_a⊙R_b = s_a⊙s_b − K_b⊙(s_a⊙msb_b) − K_a⊙(msb_a⊙s_b) + K_a⊙K_b⊙(msb_a⊙msb_b). */
function cross(a: Opened, b: Opened, [ss, sm, ms, mm]: CrossShares): Ring {
  const z = ringSub(ringSub(ss, ringMul(b.K, sm)), ringMul(a.K, ms))
  return ringAdd(z, ringMul(ringMul(a.K, b.K), mm))
}

/**
 * The sigmoid with the dealer's fused truncations (masked-dealer.ts): three openings here, no Beaver round.
 *   t = u >> (f+shift) = C_u − R_u;  t² local;  t₂ = t² >> f;  t₂² local;  t₄ = t₂² >> f (f bits each)
 *   q = a1 + a3·t₂ + a5·t₄ at 2f (public part P = a1 + a3·C_t2 + a5·C_t4, shared part −a3·R_t2 − a5·R_t4)
 *   t·q = C_u⊙q − R_u⊙q, R_u⊙q = R_u⊙P − a3·R_u⊙R_t2 − a5·R_u⊙R_t4 (dealt cross products): local
 * Returns t·q at 3f (σ̃ = 0.5 + (t·q >> 2f): that last truncation is fused with the gradient's opening). The
 * same truncations as the engine's exact mode, so the same values to the last bit's carry.
 */
async function dealtSigmoid(s: MpcSession, u: Ring, mk: BatchMasks): Promise<Ring> {
  const f = s.fracBits
  const m = u.length
  const lead = s.index === 0
  const tu = await openTruncation(s, u, mk.u, f + POLY_SHIFT)
  const t2 = await openTruncation(s, square(s, tu, mk.uSq, mk.u.msb), mk.t2, f)
  const t4 = await openTruncation(s, square(s, t2, mk.t2Sq, mk.t2.msb), mk.t4, f)
  const a3 = fixedAt(A3, f)
  const a5 = fixedAt(A5, f)
  const P = ringAdd(ringAdd(ringConst(m, fixedAt(A1, 2 * f)), ringScale(t2.C, a3)), ringScale(t4.C, a5))
  const qShared = ringNeg(ringAdd(ringScale(t2.R, a3), ringScale(t4.R, a5)))
  const q = lead ? ringAdd(qShared, P) : qShared
  const Ruq = ringSub(
    ringSub(ringMul(tu.R, P), ringScale(cross(tu, t2, mk.uT2), a3)),
    ringScale(cross(tu, t4, mk.uT4), a5),
  )
  return ringSub(ringMul(tu.C, q), Ruq)
}

async function trainShared(
  ctx: JointContext,
  s: MpcSession,
  plan: SslrPlan,
  p: SslrParams,
  y: SharedMatrix,
  program: BatchProgram,
): Promise<SharedMatrix> {
  const n = plan.rows
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const f = s.fracBits
  const l2 = p.l2 ?? 1 / n
  const batches = allBatches(n, p, ctx.seed)
  const perEpoch = batches.length / p.epochs
  const { gBits } = program
  let w: Ring = new BigUint64Array(D1)
  let decay: Ring = new BigUint64Array(D1)
  // Each batch's update w ← w − lr·(g/|B| + l2·w) is truncated when the next batch starts (where the dealer
  // program fuses it with that batch's first opening), the last one after the loop.
  let pending: Ring | undefined
  for (const [bi, idx] of batches.entries()) {
    checkAborted(ctx)
    const epoch = Math.floor(bi / perEpoch)
    const lr = p.learningRate / Math.sqrt(1 + epoch)
    const m = idx.length
    const yB = new BigUint64Array(m)
    for (let k = 0; k < m; k++) yB[k] = y.share[idx[k]]
    const r = await program.gradient(idx, w, pending, yB)
    w = r.w
    if (bi % perEpoch === 0) {
      // the update's public factors: −lr·l2 on weights (not the bias); −lr/|B| on the gradient
      decay = encodeVector(
        Float64Array.from({ length: D1 }, (_, j) => (j < D1 - 1 ? -lr * l2 : 0)),
        gBits + UPDATE_BITS,
      )
    }
    pending = ringAdd(ringScale(r.g, fixedAt(-lr / m, f + UPDATE_BITS)), ringMul(w, decay))
    ctx.progress({ phase: 'train', done: bi + 1, total: batches.length })
  }
  if (pending) w = ringAdd(w, await s.truncateRing(pending, gBits + UPDATE_BITS))
  return { rows: D1, cols: 1, share: w }
}

function encodeVector(values: Float64Array, f: number): Ring {
  const out = new BigUint64Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = BigInt.asUintN(64, encodeFixedScalar(values[i], f))
  return out
}

/** Opens each party's block of weights to that party alone, and the bias to the label holder. */
async function revealOwnBlocks(
  ctx: JointContext,
  s: MpcSession,
  plan: SslrPlan,
  p: SslrParams,
  data: LocalData,
  w: SharedMatrix,
): Promise<ModelPart> {
  let weights: number[] = []
  let bias: number | undefined
  let col = 0
  const D = plan.dims.reduce((a, b) => a + b, 0)
  const holder = ctx.labelHolder
  for (const [i, q] of plan.blocks.entries()) {
    const d = plan.dims[i]
    const from = col
    col += d
    if (!plan.compute.includes(q)) {
      // an input party: its block, and the bias if it holds the labels, in one message from each computing party
      const share =
        q === holder
          ? ringConcat(w.share.slice(from, from + d), w.share.slice(D))
          : w.share.slice(from, from + d)
      await s.revealTo({ rows: share.length, cols: 1, share }, q, outputTag(ctx, q))
      continue
    }
    if (d === 0) continue
    const v = await s.reveal({ rows: d, cols: 1, share: w.share.slice(from, from + d) }, q)
    if (v) weights = Array.from(v)
  }
  if (plan.compute.includes(holder)) {
    const b = await s.reveal({ rows: 1, cols: 1, share: w.share.slice(D) }, holder)
    if (b) bias = b[0]
  }
  const params: LinearPart = { weights, clip: p.clip, ...(bias === undefined ? {} : { bias }) }
  return { algorithm: SSLR_NAME, params, features: [...data.features] }
}
