/**
 * Federated GBDT for horizontally partitioned data (every party: the same features, its own customers).
 *  1. Bins: every party counts its values on a fixed, data-independent fine grid (cell = round(64·asinh x),
 *     1,025 cells per feature, plus a missing count) and the label counts; the counts are summed under secure
 *     aggregation, and the aggregator (ctx.labelHolder) derives quantile edges from the pooled grid counts the
 *     way learning/preprocess/binning.ts does from pooled values, and publishes them with the base score.
 *  2. Trees: level by level, every party sums the gradients and Hessians of its own rows per (node, feature,
 *     bin); the per-party histograms are summed under secure aggregation (crypto/secagg), so the aggregator
 *     learns only the pooled histograms; it picks the splits with the baseline's gain (split.ts) and publishes
 *     them (and the leaf values); every party applies them to its own rows and builds the same trees.
 * Only the smaller child's histogram is aggregated; the larger one is the parent's minus it.
 */
import { SyndicateError } from '../../../crypto/errors.ts'
import { logit, sigmoid } from '../../models/math.ts'
import { predictProba } from '../../models/predict.ts'
import type { GbdtModel, RegressionTree } from '../../models/types.ts'
import { binMatrix } from '../../preprocess/binning.ts'
import {
  type Aggregation,
  decodeMessage,
  encodeMessage,
  publish,
  receiveBroadcast,
  receivePublished,
  secureSum,
} from '../horizontal/aggregate.ts'
import type { HorizontalAlgorithm, JointContext, LocalData, ModelPart } from '../types.ts'
import { federatedGbdtParams, type TreeParams } from './params.ts'
import {
  accumulate,
  bestSplit,
  emptyHist,
  type Hist,
  type HistLayout,
  layoutOf,
  leafValue,
  type SplitChoice,
  subtractHist,
} from './split.ts'

export const FEDERATED_GBDT_NAME = 'federated-gbdt'
export const ERR_FGBDT_DATA = 'ERR_FGBDT_DATA'

/** Grid cells per unit of asinh(x): ~1.6% relative resolution; |asinh x| <= 8 covers |x| up to ~1,490. */
const GRID_SCALE = 64
const GRID_HALF = 8 * GRID_SCALE
const GRID_CELLS = 2 * GRID_HALF + 1
/** Fixed-point bits of the securely summed histograms (sums of up to ~2^20 rows stay far below 2^63). */
const FRAC_BITS = 32

export function gridCell(v: number): number {
  return Math.max(-GRID_HALF, Math.min(GRID_HALF, Math.round(Math.asinh(v) * GRID_SCALE))) + GRID_HALF
}

/** The value halfway (on the grid's asinh scale) between cells a < b: no value of either cell is on the far side. */
function edgeBetween(a: number, b: number): number {
  return Math.sinh(((a + b) / 2 - GRID_HALF) / GRID_SCALE)
}

/** quantileEdges (binning.ts) over grid cells weighted by their pooled counts instead of raw values. */
export function edgesFromGrid(counts: ArrayLike<number>, maxBins: number): number[] {
  const cells: number[] = []
  const weight: number[] = []
  for (let c = 0; c < counts.length; c++) {
    const w = Math.round(counts[c])
    if (w > 0) {
      cells.push(c)
      weight.push(w)
    }
  }
  const n = weight.reduce((s, w) => s + w, 0)
  if (cells.length <= maxBins) return cells.slice(1).map((c, k) => edgeBetween(cells[k], c))
  const edges: number[] = []
  let k = 0
  let below = weight[0] // rows in cells[0..k]
  for (let q = 1; q < maxBins; q++) {
    const rank = Math.min(n - 1, Math.ceil((q * n) / maxBins) - 1)
    while (below <= rank) below += weight[++k]
    if (k + 1 >= cells.length) break
    const e = edgeBetween(cells[k], cells[k + 1])
    if (edges.length === 0 || e > edges[edges.length - 1]) edges.push(e)
  }
  return edges
}

interface OpenNode {
  id: number
  rows: Uint32Array
  /** Pooled totals and histogram: known to the aggregator only. */
  G: number
  H: number
  hist?: Hist
  /** Aggregator: (G, H) of the left and then the right child of the chosen split. */
  childTotals?: [number, number, number, number]
  /** The larger child: its histogram is the parent's minus its sibling's (same on every party). */
  derived?: { parent?: Hist; sibling: OpenNode }
}

/** What the aggregator publishes per open node of a level. */
type Decision = { leaf: number } | { feature: number; bin: number; missingLeft: boolean; small: 0 | 1 }

async function train(ctx: JointContext, data: LocalData): Promise<ModelPart> {
  const p = federatedGbdtParams(ctx.params)
  const d = data.features.length
  const y = data.y
  if (!y || y.length !== data.rows || data.X.length !== data.rows * d || d === 0) {
    throw new SyndicateError(
      ERR_FGBDT_DATA,
      `${ctx.self}: federated GBDT needs X (rows × features) and a 0/1 label for every row`,
      { party: ctx.self },
    )
  }
  const a: Aggregation = {
    channel: ctx.channel,
    self: ctx.self,
    aggregator: ctx.labelHolder,
    tagPrefix: `${ctx.tagPrefix}fgbdt/`,
    active: [...ctx.channel.parties],
    fracBits: FRAC_BITS,
    roundTimeoutMs: 60_000,
    signal: ctx.signal,
  }
  const clients = a.active.filter((q) => q !== a.aggregator)
  if (!a.active.includes(a.aggregator) || clients.length < 2) {
    throw new SyndicateError(
      ERR_FGBDT_DATA,
      'federated GBDT needs the aggregator and at least two other parties (with one, the sum is its histogram)',
      { parties: a.active },
    )
  }
  const isAggregator = a.self === a.aggregator
  await agreeOnFeatures(a, data.features)

  // 1. Pooled grid counts -> bin edges and base score.
  ctx.progress({ phase: 'bins' })
  const sketch = new Float64Array(d * (GRID_CELLS + 1) + 2)
  for (let i = 0; i < data.rows; i++) {
    for (let j = 0; j < d; j++) {
      const v = data.X[i * d + j]
      sketch[j * (GRID_CELLS + 1) + (Number.isNaN(v) ? GRID_CELLS : gridCell(v))]++
    }
    sketch[sketch.length - 2] += y[i]
  }
  sketch[sketch.length - 1] = data.rows
  const pooled = await secureSum(a, sketch)
  let edges: number[][]
  let baseScore: number
  if (pooled) {
    const s = pooled.sum
    edges = Array.from({ length: d }, (_, j) =>
      edgesFromGrid(s.subarray(j * (GRID_CELLS + 1), j * (GRID_CELLS + 1) + GRID_CELLS), p.maxBins),
    )
    baseScore = logit(s[s.length - 2] / s[s.length - 1])
    await publish(a, 'bins', pooled.contributors, { edges, baseScore })
  } else {
    const { header } = await receivePublished(a, 'bins', 0)
    edges = header.edges as number[][]
    baseScore = header.baseScore as number
    if (
      !Array.isArray(edges) ||
      edges.length !== d ||
      !edges.every(
        (e) =>
          Array.isArray(e) &&
          e.length < p.maxBins &&
          e.every((v, k) => Number.isFinite(v) && (k === 0 || v > e[k - 1])),
      ) ||
      !Number.isFinite(baseScore)
    ) {
      throw badFrom(a.aggregator, 'bin edges')
    }
  }
  const bins = binMatrix(data.X, data.rows, d, { edges })
  const layout = layoutOf(edges.map((e) => e.length + 1))

  // 2. Trees.
  const F = new Float64Array(data.rows).fill(baseScore)
  const g = new Float64Array(data.rows)
  const h = new Float64Array(data.rows)
  const trees: RegressionTree[] = []
  for (let t = 0; t < p.trees; t++) {
    ctx.signal.throwIfAborted()
    for (let i = 0; i < data.rows; i++) {
      const q = sigmoid(F[i])
      g[i] = q - y[i]
      h[i] = q * (1 - q)
    }
    const tree: RegressionTree = {
      feature: [],
      threshold: [],
      left: [],
      right: [],
      missingLeft: [],
      value: [],
    }
    const newNode = () => {
      tree.feature.push(-1)
      tree.threshold.push(0)
      tree.left.push(-1)
      tree.right.push(-1)
      tree.missingLeft.push(false)
      return tree.value.push(0) - 1
    }
    let open: OpenNode[] = [
      { id: newNode(), rows: Uint32Array.from({ length: data.rows }, (_, i) => i), G: 0, H: 0 },
    ]
    for (let depth = 0; open.length > 0; depth++) {
      const last = depth >= p.maxDepth
      const need = last ? [] : open.filter((o) => !o.derived)
      const session = `t${t}/d${depth}`
      let decisions: Decision[]
      let sum: { sum: Float64Array; contributors: string[] } | null = null
      if (need.length > 0) {
        const local = new Float64Array(need.length * 2 * layout.slots)
        need.forEach((o, k) => {
          const hist = emptyHist(layout.slots)
          accumulate(hist, layout, 0, bins, d, o.rows, g, h)
          local.set(hist.g, 2 * k * layout.slots)
          local.set(hist.h, (2 * k + 1) * layout.slots)
        })
        sum = await secureSum(a, local)
      }
      if (isAggregator) {
        decisions = decide(p, layout, open, need, sum?.sum, depth, last)
        await publish(a, session, sum?.contributors ?? a.active, { decisions })
      } else {
        decisions = parseDecisions(
          (await receivePublished(a, session, 0)).header.decisions,
          open.length,
          layout,
        )
      }
      const next: OpenNode[] = []
      open.forEach((o, k) => {
        const dcs = decisions[k]
        if ('leaf' in dcs) {
          tree.value[o.id] = dcs.leaf
          for (const r of o.rows) F[r] += dcs.leaf
          return
        }
        const nv = layout.nv[dcs.feature]
        const l: number[] = []
        const r: number[] = []
        for (const row of o.rows) {
          const b = bins[row * d + dcs.feature]
          if (b === nv ? dcs.missingLeft : b <= dcs.bin) l.push(row)
          else r.push(row)
        }
        const left: OpenNode = { id: newNode(), rows: Uint32Array.from(l), G: 0, H: 0 }
        const right: OpenNode = { id: newNode(), rows: Uint32Array.from(r), G: 0, H: 0 }
        tree.feature[o.id] = dcs.feature
        tree.threshold[o.id] = edges[dcs.feature][dcs.bin]
        tree.missingLeft[o.id] = dcs.missingLeft
        tree.left[o.id] = left.id
        tree.right[o.id] = right.id
        if (o.childTotals) {
          ;[left.G, left.H, right.G, right.H] = o.childTotals
        }
        const [small, large] = dcs.small === 0 ? [left, right] : [right, left]
        large.derived = { parent: o.hist, sibling: small }
        next.push(left, right)
      })
      open = next
    }
    trees.push(tree)
    ctx.progress({ phase: 'train', done: t + 1, total: p.trees })
  }
  const model: GbdtModel = { kind: 'gbdt', features: [...data.features], preprocessing: {}, baseScore, trees }
  return { algorithm: FEDERATED_GBDT_NAME, params: model, features: [...data.features] }
}

/**
 * The aggregator's choices for every open node: fills the pooled histograms (summed, or by subtraction),
 * then a split or a leaf per node. Node totals come from the histograms (the root's from its first feature).
 */
function decide(
  p: TreeParams,
  layout: HistLayout,
  open: OpenNode[],
  need: OpenNode[],
  sum: Float64Array | undefined,
  depth: number,
  last: boolean,
): Decision[] {
  need.forEach((o, k) => {
    const s = layout.slots
    o.hist = { g: sum!.slice(2 * k * s, (2 * k + 1) * s), h: sum!.slice((2 * k + 1) * s, (2 * k + 2) * s) }
  })
  if (!last) {
    for (const o of open) if (o.derived) o.hist = subtractHist(o.derived.parent!, o.derived.sibling.hist!)
  }
  if (depth === 0) {
    const root = open[0]
    const end = layout.off[1]
    for (let s = 0; s < end; s++) {
      root.G += root.hist!.g[s]
      root.H += root.hist!.h[s]
    }
  }
  return open.map((o) => {
    const s: SplitChoice | undefined = last ? undefined : bestSplit(o.hist!, layout, o.G, o.H, p)
    if (!s) return { leaf: leafValue(o.G, o.H, p.lambda, p.learningRate) }
    // Children totals from the parent's histogram, for their leaves and the next level's split search.
    const off = layout.off[s.feature]
    let GL = 0
    let HL = 0
    for (let b = 0; b <= s.bin; b++) {
      GL += o.hist!.g[off + b]
      HL += o.hist!.h[off + b]
    }
    if (s.missingLeft) {
      GL += o.hist!.g[off + layout.nv[s.feature]]
      HL += o.hist!.h[off + layout.nv[s.feature]]
    }
    o.childTotals = [GL, HL, o.G - GL, o.H - HL]
    return { feature: s.feature, bin: s.bin, missingLeft: s.missingLeft, small: HL <= o.H - HL ? 0 : 1 }
  })
}

function parseDecisions(raw: unknown, count: number, layout: HistLayout): Decision[] {
  if (!Array.isArray(raw) || raw.length !== count) throw badFrom('the aggregator', 'split decisions')
  return raw.map((x) => {
    const o = (x ?? {}) as Record<string, unknown>
    if (typeof o.leaf === 'number' && Number.isFinite(o.leaf)) return { leaf: o.leaf }
    const f = o.feature
    if (
      typeof f === 'number' &&
      Number.isInteger(f) &&
      f >= 0 &&
      f < layout.nv.length &&
      typeof o.bin === 'number' &&
      Number.isInteger(o.bin) &&
      o.bin >= 0 &&
      o.bin < layout.nv[f] - 1 &&
      typeof o.missingLeft === 'boolean' &&
      (o.small === 0 || o.small === 1)
    ) {
      return { feature: f, bin: o.bin, missingLeft: o.missingLeft, small: o.small }
    }
    throw badFrom('the aggregator', 'split decisions')
  })
}

async function agreeOnFeatures(a: Aggregation, features: string[]): Promise<void> {
  if (a.self !== a.aggregator) {
    await a.channel.send(a.aggregator, `${a.tagPrefix}schema`, encodeMessage({ features }))
    const { header } = decodeMessage(a.aggregator, await receiveBroadcast(a, 'schema/ok'), 0)
    if (header.ok !== true) throw new SyndicateError(ERR_FGBDT_DATA, String(header.error))
    return
  }
  const problems: string[] = []
  for (const q of a.active) {
    if (q === a.self) continue
    const { header } = decodeMessage(q, await a.channel.recv(q, `${a.tagPrefix}schema`), 0)
    if (JSON.stringify(header.features) !== JSON.stringify(features)) {
      problems.push(`${q} has ${JSON.stringify(header.features)}`)
    }
  }
  const error = problems.length
    ? `federated GBDT needs the same feature columns in the same order on every party (expected ${JSON.stringify(features)}): ${problems.join('; ')}`
    : undefined
  await Promise.all(
    a.active
      .filter((q) => q !== a.self)
      .map((q) => a.channel.send(q, `${a.tagPrefix}schema/ok`, encodeMessage({ ok: !error, error }))),
  )
  if (error) throw new SyndicateError(ERR_FGBDT_DATA, error)
}

function badFrom(party: string, what: string): SyndicateError {
  return new SyndicateError('ERR_HFL_BAD_MESSAGE', `federated GBDT: ${party} sent malformed ${what}`, {
    party,
  })
}

function predict(part: ModelPart, data: LocalData): Float64Array {
  const m = part.params as GbdtModel | null
  if (part.algorithm !== FEDERATED_GBDT_NAME || m?.kind !== 'gbdt' || !Array.isArray(m.trees)) {
    throw new SyndicateError(ERR_FGBDT_DATA, `not a ${FEDERATED_GBDT_NAME} model part`, {})
  }
  if (
    JSON.stringify(data.features) !== JSON.stringify(m.features) ||
    data.X.length !== data.rows * m.features.length
  ) {
    throw new SyndicateError(
      ERR_FGBDT_DATA,
      `scoring needs the columns ${m.features.join(', ')} in that order`,
      {},
    )
  }
  return predictProba(m, data.X, data.rows)
}

export const federatedGbdt: HorizontalAlgorithm = { name: FEDERATED_GBDT_NAME, train, predict }
