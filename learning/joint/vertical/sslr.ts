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
import { encodeFixed, encodeFixedScalar } from '../../../crypto/fixed.ts'
import {
  type CorrelatedSource,
  type CorrelationRequest,
  DealerSource,
  type FixedMatrix,
  HeTripleSource,
  MpcSession,
  type OwnedTriple,
  type SharedMatrix,
} from '../../../crypto/mpc/index.ts'
import {
  type Ring,
  ringAdd,
  ringConst,
  ringMatmul,
  ringMul,
  ringScale,
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
import { type BatchMasks, gatherRows, MaskedMatrixDealer } from './masked-dealer.ts'
import { ERR_JOINT_PARAMS, nonNegative, parseParams, positive, positiveInt } from './params.ts'
import { POLY_SHIFT, SIGMOID_POLY } from './sigmoid-poly.ts'

export const SSLR_NAME = 'vertical-ss-lr'
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
    fracBits: z.number().int().min(12).max(16).default(16),
  })
  .strict()
type SslrParams = z.output<typeof Params>

interface SslrPlan {
  compute: string[]
  /** Feature count per computing party, in `compute` order (column blocks of the shared X). */
  dims: number[]
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
    // A party without features and labels computes nothing; it can serve as an external dealer (an arbiter).
    const compute = ctx.channel.parties.filter((q) => {
      const s = shapes.get(q) as PartyShape
      return s.d > 0 || s.label || (triples === 'dealer' && q === dealer)
    })
    if (triples === 'he' && compute.length !== 2) {
      throw new SyndicateError(
        ERR_JOINT_PARAMS,
        `dealer-free triples ('he') work for exactly two parties, this job has ${compute.length}; set triples: 'dealer' and name a dealer`,
      )
    }
    const plan: SslrPlan = {
      compute,
      dims: compute.map((q) => (shapes.get(q) as PartyShape).d),
      rows: data.rows,
      truncation: triples === 'he' ? 'local' : 'exact',
    }
    const matrices = triples === 'he' ? 'owned' : 'masked'
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
      })
    if (!compute.includes(ctx.self)) {
      // no data: an external dealer deals the whole plan; any other such party has nothing to do
      if (triples === 'dealer' && ctx.self === dealer) {
        ctx.progress({ phase: 'offline', message: `dealing ${requests.length} correlations` })
        const dealing = await createSource(ctx, triples, dealer, compute)
        await (dealing as DealerSource).serve(requests)
        const masks = await maskedDealer()
        masks.mask()
        for (const idx of batches) await masks.batch(idx)
      }
      const empty: LinearPart = { weights: [], clip: p.clip }
      return { algorithm: SSLR_NAME, params: empty, features: [] }
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
      let products: BatchProducts
      const y = shareLabels(s, plan, data, ctx.labelHolder)
      if (matrices === 'owned') {
        const own = encodeFixed(clipped(data.X, p.clip), p.fracBits)
        const blocks = await ownedCorrelations(
          s,
          source as HeTripleSource,
          plan,
          own,
          batches,
          p.epochs,
          fixed,
        )
        products = ownedProducts(s, plan, own, blocks)
      } else {
        products = await maskedProducts(s, shareDesign(s, plan, p, data), D1, await maskedDealer(), batches)
      }
      const w = await trainShared(ctx, s, plan, p, y, products)
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

/** Every correlation the online phase takes, in order (the program below, batch by batch). */
function correlationPlan(plan: SslrPlan, p: Pick<SslrParams, 'epochs' | 'batchSize' | 'fracBits'>) {
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const f = p.fracBits
  const exact = plan.truncation === 'exact'
  const out: CorrelationRequest[] = []
  const trunc = (n: number, bits: number) => {
    if (exact) out.push({ kind: 'trunc', n, f: bits })
  }
  for (let e = 0; e < p.epochs; e++) {
    for (const m of batchSizes(plan.rows, p.batchSize)) {
      trunc(m, f + POLY_SHIFT)
      for (let i = 0; i < 2; i++) {
        out.push({ kind: 'mul', n: m })
        trunc(m, f)
      }
      // exact truncation keeps q and X_Bᵀ·r untruncated (wider values, two rounds fewer; see trainShared)
      if (!exact) trunc(m, f)
      out.push({ kind: 'mul', n: m })
      trunc(m, exact ? 2 * f : f)
      if (!exact) trunc(D1, f)
      trunc(D1, (exact ? 2 * f : f) + UPDATE_BITS)
    }
  }
  return out
}

/** The shared n × (D+1) design matrix [X_1 | … | X_k | 1] (for the dealer's masked products). */
function shareDesign(s: MpcSession, plan: SslrPlan, p: SslrParams, data: LocalData): Ring {
  const n = plan.rows
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const X = new BigUint64Array(n * D1)
  let col = 0
  for (const [i, q] of plan.compute.entries()) {
    const d = plan.dims[i]
    if (d === 0) continue
    const block = s.share(q, n, d, q === s.self ? clipped(data.X, p.clip) : undefined).share
    for (let r = 0; r < n; r++) X.set(block.subarray(r * d, r * d + d), r * D1 + col)
    col += d
  }
  if (s.index === 0) {
    const one = encodeFixedScalar(1, s.fracBits)
    for (let r = 0; r < n; r++) X[r * D1 + D1 - 1] = one
  }
  return X
}

function shareLabels(s: MpcSession, plan: SslrPlan, data: LocalData, labelHolder: string): SharedMatrix {
  return s.share(
    labelHolder,
    plan.rows,
    1,
    labelHolder === s.self ? Float64Array.from(data.y as Uint8Array) : undefined,
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
  for (const [i, owner] of plan.compute.entries()) {
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
 * SecureML's products with X masked once (masked-dealer.ts): E = X − A is opened at the start; per batch
 * X_B·w = E_B·w + A_B·(w − b) + A_B·b and X_Bᵀ·r = E_Bᵀ·r + A_Bᵀ·(r − b') + A_Bᵀ·b', opening only w − b and r − b'.
 * All batches' correlations are dealt before the first step (the offline phase).
 */
async function maskedProducts(
  s: MpcSession,
  X: Ring,
  D1: number,
  dealer: MaskedMatrixDealer,
  batches: Uint32Array[],
): Promise<BatchProducts> {
  const A = dealer.mask()
  const masks: BatchMasks[] = []
  for (const idx of batches) masks.push(await dealer.batch(idx))
  const [E] = await s.open([ringSub(X, A)])
  let at = 0
  let cur = { EB: E, AB: A, c2: E, b2: E }
  let m = 0
  return {
    async forward(idx, w) {
      const mk = masks[at++]
      m = idx.length
      cur = { EB: gatherRows(E, idx, D1), AB: gatherRows(A, idx, D1), c2: mk.c2, b2: mk.b2 }
      const [f] = await s.open([ringSub(w, mk.b)])
      return ringAdd(ringAdd(ringMatmul(cur.EB, w, m, D1, 1), ringMatmul(cur.AB, f, m, D1, 1)), mk.c)
    },
    async backward(r) {
      const [f] = await s.open([ringSub(r, cur.b2)])
      // X_Bᵀ·r as the row vector rᵀ·X_B: no transpose needed
      return ringAdd(ringAdd(ringMatmul(r, cur.EB, 1, m, D1), ringMatmul(f, cur.AB, 1, m, D1)), cur.c2)
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

async function trainShared(
  ctx: JointContext,
  s: MpcSession,
  plan: SslrPlan,
  p: SslrParams,
  y: SharedMatrix,
  products: BatchProducts,
): Promise<SharedMatrix> {
  const n = plan.rows
  const D1 = plan.dims.reduce((a, b) => a + b, 0) + 1
  const f = s.fracBits
  const lead = s.index === 0
  const l2 = p.l2 ?? 1 / n
  const enc = (c: number) => BigInt.asIntN(64, encodeFixedScalar(c, f))
  const [a1, a3, a5] = SIGMOID_POLY
  const batches = allBatches(n, p, ctx.seed)
  const perEpoch = batches.length / p.epochs
  // With exact truncation (error <= 1 ulp for |x| < 2^62) q stays at 2f bits and the gradient at 2f bits
  // until the update: two truncation rounds fewer per batch. Local truncation fails with probability
  // ~|x|/2^63, so there every value is truncated as soon as possible.
  const wide = plan.truncation === 'exact'
  const qBits = wide ? 2 * f : f
  const gBits = wide ? 2 * f : f
  const at = (c: number, bits: number) => BigInt.asIntN(64, encodeFixedScalar(c, bits))
  let w: Ring = new BigUint64Array(D1)
  let decay: Ring = new BigUint64Array(D1)
  for (const [bi, idx] of batches.entries()) {
    checkAborted(ctx)
    const epoch = Math.floor(bi / perEpoch)
    const lr = p.learningRate / Math.sqrt(1 + epoch)
    if (bi % perEpoch === 0) {
      // the update's public factors: −lr·l2 on weights (not the bias); −lr/|B| on the gradient
      decay = encodeVector(
        Float64Array.from({ length: D1 }, (_, j) => (j < D1 - 1 ? -lr * l2 : 0)),
        gBits + UPDATE_BITS,
      )
    }
    const m = idx.length
    const yB = new BigUint64Array(m)
    for (let k = 0; k < m; k++) yB[k] = y.share[idx[k]]
    // t = u/2^POLY_SHIFT at f bits, σ̃(u) = 0.5 + t·(a1 + a3·t² + a5·t⁴)
    const t = await s.truncateRing(await products.forward(idx, w), f + POLY_SHIFT)
    const t2 = await s.truncateRing(await s.mulRing(t, t), f)
    const t4 = await s.truncateRing(await s.mulRing(t2, t2), f)
    let q = ringAdd(ringScale(t2, enc(a3)), ringScale(t4, enc(a5)))
    if (!wide) q = await s.truncateRing(q, f)
    if (lead) q = ringAdd(q, ringConst(m, at(a1, qBits)))
    let sig = await s.truncateRing(await s.mulRing(t, q), qBits)
    if (lead) sig = ringAdd(sig, ringConst(m, enc(0.5)))
    let g = await products.backward(ringSub(sig, yB))
    if (!wide) g = await s.truncateRing(g, f)
    const step = ringAdd(ringScale(g, at(-lr / m, f + UPDATE_BITS)), ringMul(w, decay))
    w = ringAdd(w, await s.truncateRing(step, gBits + UPDATE_BITS))
    ctx.progress({ phase: 'train', done: bi + 1, total: batches.length })
  }
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
  for (const [i, q] of plan.compute.entries()) {
    const d = plan.dims[i]
    const block = { rows: d, cols: 1, share: w.share.slice(col, col + d) }
    col += d
    if (d === 0) continue
    const v = await s.reveal(block, q)
    if (v) weights = Array.from(v)
  }
  const b = await s.reveal({ rows: 1, cols: 1, share: w.share.slice(col) }, ctx.labelHolder)
  if (b) bias = b[0]
  const params: LinearPart = { weights, clip: p.clip, ...(bias === undefined ? {} : { bias }) }
  return { algorithm: SSLR_NAME, params, features: [...data.features] }
}
