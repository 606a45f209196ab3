/**
 * SecureBoost-style vertical GBDT (Cheng et al., 2019) with BFV in coefficient encoding instead of Paillier.
 * The label holder computes the log-loss gradients and Hessians, packs each row's (g, h) into one integer and
 * encrypts the rows of a node in chunks; each feature holder turns a chunk into one encrypted histogram per
 * feature with one plaintext product (poly.ts), masks every other coefficient and returns it; the label holder
 * decrypts, picks the best split of all features by the baseline's gain, and asks the owner of a winning
 * remote feature to apply it: the owner keeps the threshold (the label holder only knows "party P, split k")
 * and answers which rows of the node go left. Leaves stay with the label holder. docs/secureboost.md has the
 * protocol, the measured costs and what each party learns.
 */
import { SyndicateError } from '../../../crypto/errors.ts'
import { packGh, planGhPacking, unpackGhSum } from '../../../crypto/he/index.ts'
import { centre } from '../../../crypto/he/mask.ts'
import { logit, sigmoid } from '../../models/math.ts'
import { binMatrix, fitBinning } from '../../preprocess/binning.ts'
import type { JointContext, LocalData, ModelPart, VerticalAlgorithm } from '../types.ts'
import { badMessage } from '../vertical/wire.ts'
import { secureBoostParams, type TreeParams } from './params.ts'
import { GradientKeys, SB_DEGREE } from './poly.ts'
import { HistogramPool } from './pool.ts'
import {
  accumulate,
  bestSplit,
  emptyHist,
  type Hist,
  layoutOf,
  leafValue,
  type SplitParams,
  subtractHist,
} from './split.ts'
import { bitAt, encodeMessage, isInt, packBits, readRows, recvMessage, u32Bytes } from './wire.ts'

export const SECUREBOOST_NAME = 'secureboost'
/** Gradient chunks per message (~4 MB). */
const BATCH = 16
export const ERR_SB_DATA = 'ERR_SB_DATA'
export const ERR_SB_HISTOGRAM = 'ERR_SB_HISTOGRAM'

/** A split a party owns: rows with x <= threshold go left, missing values follow missingLeft. */
export interface SplitRule {
  feature: number
  threshold: number
  missingLeft: boolean
}

/** A leaf (value includes the learning rate) or an internal node naming the party and its split id. */
export type SbNode = { value: number } | { party: string; split: number; left: number; right: number }

export interface LabelHolderModel {
  baseScore: number
  trees: { nodes: SbNode[] }[]
  /** The label holder's own split rules (referenced with party = its name). */
  splits: SplitRule[]
}

export interface FeatureHolderModel {
  splits: SplitRule[]
}

interface Prepared {
  p: TreeParams
  d: number
  bins: Uint8Array
  edges: number[][]
  valueBins: number[]
}

function prepare(ctx: JointContext, data: LocalData): Prepared {
  const p = secureBoostParams(ctx.params)
  const d = data.features.length
  if (!Number.isInteger(data.rows) || data.rows < 2 || data.X.length !== data.rows * d) {
    throw new SyndicateError(
      ERR_SB_DATA,
      `${ctx.self}: X must hold rows × features values (got ${data.X.length})`,
      {
        party: ctx.self,
      },
    )
  }
  const binning = fitBinning(data.X, data.rows, d, p.maxBins)
  return {
    p,
    d,
    bins: binMatrix(data.X, data.rows, d, binning),
    edges: binning.edges,
    valueBins: binning.edges.map((e) => e.length + 1),
  }
}

/** The side of a row under a rule, from its bin code (training) — the same partition as the raw threshold. */
function goesLeft(bin: number, nv: number, splitBin: number, missingLeft: boolean): boolean {
  return bin === nv ? missingLeft : bin <= splitBin
}

interface Open {
  id: number
  rows: Uint32Array
  G: number
  H: number
  hist?: Hist
  /** Histogram by subtraction: parent's histogram minus the sibling's. */
  from?: { parent: Hist; sibling: Open }
}

async function trainLabelHolder(ctx: JointContext, data: LocalData): Promise<ModelPart> {
  const { p, d, bins, edges, valueBins } = prepare(ctx, data)
  const ch = ctx.channel
  const T = (s: string) => `${ctx.tagPrefix}sb/${s}`
  const y = data.y
  const n = data.rows
  if (!y || y.length !== n) {
    throw new SyndicateError(ERR_SB_DATA, 'the label holder needs a 0/1 label for every row', {})
  }
  const others = ch.parties.filter((q) => q !== ctx.self)
  if (others.length === 0) {
    throw new SyndicateError(
      ERR_SB_DATA,
      'SecureBoost needs at least one feature holder besides the label holder',
      {},
    )
  }
  const keys = await GradientKeys.generate()
  try {
    await Promise.all(others.map((q) => ch.send(q, T('keys'), keys.bundle)))
    // The joint feature order: ours, then each feature holder's in channel order (as the pooled baseline).
    const owner: { party: string; local: number }[] = valueBins.map((_, j) => ({ party: ctx.self, local: j }))
    const allBins = [...valueBins]
    const remoteCount = new Map<string, number>()
    for (const q of others) {
      const m = await recvMessage(ch, q, T('hello'))
      const qb = m.header.bins
      if (
        m.header.rows !== n ||
        !Array.isArray(qb) ||
        qb.length > 10_000 ||
        !qb.every((b) => isInt(b, 1, p.maxBins))
      ) {
        throw badMessage(q, T('hello'), `expected ${n} rows and per-feature bin counts`)
      }
      remoteCount.set(q, qb.length)
      qb.forEach((b: number, k: number) => {
        owner.push({ party: q, local: k })
        allBins.push(b)
      })
    }
    const layout = layoutOf(allBins)
    const N = keys.coeffs.degree
    const t = keys.coeffs.t
    // Rows per chunk: the widest remote feature's bins (value bins + missing) must fit in one polynomial.
    const width = Math.max(2, ...allBins.slice(d).map((b) => b + 1))
    const chunk = Math.floor(N / width)
    const packing = planGhPacking({ preset: 'bfv-8192', maxCount: n, gMax: 1, hMax: 0.25 })
    const sp: SplitParams = p

    let pos = 0
    for (let i = 0; i < n; i++) pos += y[i]
    const baseScore = logit(pos / n)
    const F = new Float64Array(n).fill(baseScore)
    const g = new Float64Array(n)
    const h = new Float64Array(n)
    const splits: SplitRule[] = []
    const trees: { nodes: SbNode[] }[] = []
    const step = new Map(others.map((q) => [q, 0]))
    const command = async (q: string, header: Record<string, unknown>, parts: Uint8Array[]) => {
      const s = step.get(q)!
      step.set(q, s + 1)
      await ch.send(q, T(`c${s}`), encodeMessage(header, parts))
      return s
    }

    const histograms = async (need: Open[], gh: BigInt64Array): Promise<Hist[]> => {
      const out = need.map(() => emptyHist(layout.slots))
      need.forEach((o, k) => {
        accumulate(out[k], layout, 0, bins, d, o.rows, g, h)
      })
      if (layout.nv.length === d) return out
      const sums = need.map((o) => {
        let s = 0n
        for (const r of o.rows) s += gh[r]
        return s
      })
      // The row lists go in the command; the chunks follow in batches, each sent as soon as it is encrypted, so
      // a feature holder on another machine computes while we encrypt and no message exceeds ~4 MB.
      const header = { type: 'hist', n: chunk, nodes: need.map((o) => o.rows.length) }
      const sent = await Promise.all(
        others.map((q) =>
          command(
            q,
            header,
            need.map((o) => u32Bytes(o.rows)),
          ),
        ),
      )
      for (let k = 0; k < need.length; k++) {
        const rows = need[k].rows
        for (let batch = 0; batch * BATCH * chunk < rows.length; batch++) {
          const parts: Uint8Array[] = []
          const first = batch * BATCH * chunk
          for (let start = first; start < Math.min(rows.length, first + BATCH * chunk); start += chunk) {
            const coeffs = new BigUint64Array(N)
            const end = Math.min(rows.length, start + chunk)
            for (let i = start; i < end; i++) {
              const v = gh[rows[i]]
              coeffs[i - start] = v < 0n ? BigInt.asUintN(64, v + t) : BigInt.asUintN(64, v)
            }
            parts.push(keys.encrypt(coeffs))
          }
          const msg = encodeMessage({}, parts)
          await Promise.all(others.map((q, i) => ch.send(q, T(`c${sent[i]}/${k}/${batch}`), msg)))
        }
      }
      let joint = d
      for (let k = 0; k < others.length; k++) {
        const q = others[k]
        const tag = T(`r${sent[k]}`)
        const m = await recvMessage(ch, q, tag)
        const fq = remoteCount.get(q)!
        if (m.parts.length !== need.length * fq) throw badMessage(q, tag, 'histogram count')
        for (let f = 0; f < fq; f++) {
          const j = joint + f
          for (let node = 0; node < need.length; node++) {
            const coeffs = keys.decrypt(m.parts[node * fq + f])
            let total = 0n
            for (let b = 0; b <= layout.nv[j]; b++) {
              const v = centre(coeffs[b * chunk + chunk - 1], t)
              total += v
              const sum = unpackGhSum(v, packing)
              out[node].g[layout.off[j] + b] = sum.g
              out[node].h[layout.off[j] + b] = sum.h
            }
            // Every row falls in exactly one bin: the bins must add up to the node's exact packed sum, which
            // catches a corrupted or wrongly computed histogram (it replaces a noise-budget check).
            if ((total - sums[node]) % t !== 0n) {
              throw new SyndicateError(
                ERR_SB_HISTOGRAM,
                `${q}'s histogram of its feature ${f} does not add up to the node's gradient sum; ` +
                  'its result is corrupted (retry the job; if it persists, report it)',
                { party: q, feature: f },
              )
            }
          }
        }
        joint += fq
      }
      return out
    }

    for (let tree = 0; tree < p.trees; tree++) {
      ctx.signal.throwIfAborted()
      for (let i = 0; i < n; i++) {
        const q = sigmoid(F[i])
        g[i] = q - y[i]
        h[i] = q * (1 - q)
      }
      const gh = packGh(g, h, packing)
      const nodes: SbNode[] = []
      const newNode = () => nodes.push({ value: 0 }) - 1
      const all = new Uint32Array(n).map((_, i) => i)
      let G = 0
      let H = 0
      for (let i = 0; i < n; i++) {
        G += g[i]
        H += h[i]
      }
      let open: Open[] = [{ id: newNode(), rows: all, G, H }]
      for (let depth = 0; depth < p.maxDepth && open.length > 0; depth++) {
        // An empty child (possible with minChildWeight 0) has an all-zero histogram: nothing to ask for.
        for (const o of open) if (!o.from && o.rows.length === 0) o.hist = emptyHist(layout.slots)
        const need = open.filter((o) => !o.from && o.rows.length > 0)
        const hs = need.length > 0 ? await histograms(need, gh) : []
        need.forEach((o, k) => {
          o.hist = hs[k]
        })
        for (const o of open) if (o.from) o.hist = subtractHist(o.from.parent, o.from.sibling.hist!)
        // Choose every node's split; remote ones are applied by their owners in one message per party.
        const chosen = open.map((o) => bestSplit(o.hist!, layout, o.G, o.H, sp))
        const remote = new Map<string, number[]>()
        chosen.forEach((s, k) => {
          if (!s) return
          const who = owner[s.feature].party
          if (who !== ctx.self) remote.set(who, [...(remote.get(who) ?? []), k])
        })
        const leftOf = new Map<number, Uint8Array>()
        const idOf = new Map<number, number>()
        await Promise.all(
          [...remote].map(async ([q, ks]) => {
            const header = {
              type: 'split',
              splits: ks.map((k) => {
                const s = chosen[k]!
                return { feature: owner[s.feature].local, bin: s.bin, missingLeft: s.missingLeft }
              }),
            }
            const s = await command(
              q,
              header,
              ks.map((k) => u32Bytes(open[k].rows)),
            )
            const tag = T(`r${s}`)
            const m = await recvMessage(ch, q, tag)
            const ids = m.header.ids
            if (!Array.isArray(ids) || ids.length !== ks.length || m.parts.length !== ks.length) {
              throw badMessage(q, tag, 'split answer')
            }
            ks.forEach((k, i) => {
              if (!isInt(ids[i], 0, 1e9) || m.parts[i].length !== Math.ceil(open[k].rows.length / 8)) {
                throw badMessage(q, tag, 'split answer')
              }
              idOf.set(k, ids[i])
              leftOf.set(k, m.parts[i])
            })
          }),
        )
        const next: Open[] = []
        open.forEach((o, k) => {
          const s = chosen[k]
          if (!s) {
            nodes[o.id] = { value: leafValue(o.G, o.H, p.lambda, p.learningRate) }
            addLeaf(F, o.rows, (nodes[o.id] as { value: number }).value)
            return
          }
          const who = owner[s.feature].party
          let isLeft: (i: number) => boolean
          let splitId: number
          if (who === ctx.self) {
            const j = s.feature
            splitId = splits.push({ feature: j, threshold: edges[j][s.bin], missingLeft: s.missingLeft }) - 1
            isLeft = (i) => goesLeft(bins[o.rows[i] * d + j], layout.nv[j], s.bin, s.missingLeft)
          } else {
            const packed = leftOf.get(k)!
            splitId = idOf.get(k)!
            isLeft = (i) => bitAt(packed, i)
          }
          const l: number[] = []
          const r: number[] = []
          let GL = 0
          let HL = 0
          for (let i = 0; i < o.rows.length; i++) {
            const row = o.rows[i]
            if (isLeft(i)) {
              l.push(row)
              GL += g[row]
              HL += h[row]
            } else r.push(row)
          }
          const left: Open = { id: newNode(), rows: Uint32Array.from(l), G: GL, H: HL }
          const right: Open = { id: newNode(), rows: Uint32Array.from(r), G: o.G - GL, H: o.H - HL }
          nodes[o.id] = { party: who, split: splitId, left: left.id, right: right.id }
          if (depth + 1 < p.maxDepth) {
            // Only the smaller child's histogram is computed; the larger one's is the parent's minus it.
            const [small, large] = l.length <= r.length ? [left, right] : [right, left]
            large.from = { parent: o.hist!, sibling: small }
          }
          next.push(left, right)
        })
        open = next
      }
      for (const o of open) {
        const value = leafValue(o.G, o.H, p.lambda, p.learningRate)
        nodes[o.id] = { value }
        addLeaf(F, o.rows, value)
      }
      trees.push({ nodes })
      ctx.progress({ phase: 'train', done: tree + 1, total: p.trees })
    }
    await Promise.all(others.map((q) => command(q, { type: 'done' }, [])))
    const model: LabelHolderModel = { baseScore, trees, splits }
    return { algorithm: SECUREBOOST_NAME, params: model, features: [...data.features] }
  } finally {
    keys.free()
  }
}

function addLeaf(F: Float64Array, rows: Uint32Array, value: number): void {
  for (const r of rows) F[r] += value
}

async function trainFeatureHolder(ctx: JointContext, data: LocalData): Promise<ModelPart> {
  const { d, bins, edges, valueBins } = prepare(ctx, data)
  const ch = ctx.channel
  const LH = ctx.labelHolder
  const T = (s: string) => `${ctx.tagPrefix}sb/${s}`
  if (!ch.parties.includes(LH)) {
    throw new SyndicateError(ERR_SB_DATA, `label holder ${LH} is not a party of the job`, {})
  }
  const pool = await HistogramPool.start(await ch.recv(LH, T('keys')), bins, d)
  try {
    await ch.send(LH, T('hello'), encodeMessage({ rows: data.rows, bins: valueBins }))
    const N = SB_DEGREE
    const splits: SplitRule[] = []
    const widths = valueBins.map((b) => b + 1)
    for (let s = 0; ; s++) {
      ctx.signal.throwIfAborted()
      const tag = T(`c${s}`)
      const m = await recvMessage(ch, LH, tag)
      const type = m.header.type
      if (type === 'done') break
      ctx.progress({ phase: String(type), done: s })
      if (type === 'hist') {
        const chunk = m.header.n
        const counts = m.header.nodes
        if (
          !isInt(chunk, 1, N) ||
          widths.some((w) => w * chunk > N) ||
          !Array.isArray(counts) ||
          !counts.every((c) => isInt(c, 1, data.rows))
        ) {
          throw badMessage(LH, tag, 'histogram request')
        }
        if (m.parts.length !== counts.length) throw badMessage(LH, tag, 'row lists')
        const out: Uint8Array[] = []
        for (let k = 0; k < counts.length; k++) {
          const rows = readRows(LH, tag, m.parts[k], data.rows)
          if (rows.length !== counts[k]) throw badMessage(LH, tag, 'row count')
          const chunks = Math.ceil(rows.length / chunk)
          // The root (all rows, in order) has the same layout every tree: its plaintexts are cached.
          const node = pool.node(rows, chunk, widths, rows.length === data.rows)
          try {
            for (let batch = 0; batch * BATCH < chunks; batch++) {
              const btag = T(`c${s}/${k}/${batch}`)
              const b = await recvMessage(ch, LH, btag)
              if (b.parts.length !== Math.min(BATCH, chunks - batch * BATCH))
                throw badMessage(LH, btag, 'chunk count')
              b.parts.forEach((part, i) => {
                node.add(part, batch * BATCH + i)
              })
            }
            out.push(...(await node.finish()))
          } finally {
            node.free()
          }
        }
        await ch.send(LH, T(`r${s}`), encodeMessage({}, out))
      } else if (type === 'split') {
        const list = m.header.splits
        if (!Array.isArray(list) || list.length !== m.parts.length) throw badMessage(LH, tag, 'split request')
        const ids: number[] = []
        const masks: Uint8Array[] = []
        list.forEach((x: unknown, i: number) => {
          const { feature: f, bin, missingLeft } = (x ?? {}) as Record<string, unknown>
          if (!isInt(f, 0, d - 1) || !isInt(bin, 0, valueBins[f] - 2) || typeof missingLeft !== 'boolean') {
            throw badMessage(LH, tag, 'split request')
          }
          const rows = readRows(LH, tag, m.parts[i], data.rows)
          ids.push(splits.push({ feature: f, threshold: edges[f][bin], missingLeft }) - 1)
          const left = new Uint8Array(rows.length)
          for (let k = 0; k < rows.length; k++) {
            left[k] = goesLeft(bins[rows[k] * d + f], valueBins[f], bin, missingLeft) ? 1 : 0
          }
          masks.push(packBits(left))
        })
        await ch.send(LH, T(`r${s}`), encodeMessage({ ids }, masks))
      } else {
        throw badMessage(LH, tag, `unknown command ${String(type)}`)
      }
    }
    const model: FeatureHolderModel = { splits }
    return { algorithm: SECUREBOOST_NAME, params: model, features: [...data.features] }
  } finally {
    await pool.close()
  }
}

/** Left bits of every rule for every row: bit (rule·rows + row). */
function evaluateRules(rules: readonly SplitRule[], data: LocalData): Uint8Array {
  const d = data.features.length
  const bits = new Uint8Array(rules.length * data.rows)
  rules.forEach((r, k) => {
    for (let i = 0; i < data.rows; i++) {
      const v = data.X[i * d + r.feature]
      bits[k * data.rows + i] = (Number.isNaN(v) ? r.missingLeft : v <= r.threshold) ? 1 : 0
    }
  })
  return packBits(bits)
}

function checkPart(part: ModelPart, data: LocalData, self: string): SplitRule[] {
  const bad = (why: string) =>
    new SyndicateError(ERR_SB_DATA, `${self}: cannot score with this SecureBoost model part (${why})`, {})
  if (part.algorithm !== SECUREBOOST_NAME) throw bad(`it is a ${part.algorithm} part`)
  if (part.features.length !== data.features.length || part.features.some((f, j) => f !== data.features[j])) {
    throw bad(`expected the columns ${part.features.join(', ')}`)
  }
  if (data.X.length !== data.rows * data.features.length) throw bad('X must hold rows × features values')
  const rules = (part.params as { splits?: unknown }).splits
  if (
    !Array.isArray(rules) ||
    !rules.every(
      (r) =>
        isInt(r?.feature, 0, data.features.length - 1) &&
        typeof r.threshold === 'number' &&
        typeof r.missingLeft === 'boolean',
    )
  ) {
    throw bad('malformed split rules')
  }
  return rules as SplitRule[]
}

async function predict(ctx: JointContext, part: ModelPart, data: LocalData): Promise<Float64Array | null> {
  const rules = checkPart(part, data, ctx.self)
  const ch = ctx.channel
  const tag = `${ctx.tagPrefix}sb/predict`
  const mine = evaluateRules(rules, data)
  if (ctx.self !== ctx.labelHolder) {
    await ch.send(ctx.labelHolder, tag, encodeMessage({ splits: rules.length, rows: data.rows }, [mine]))
    return null
  }
  const bitsOf = new Map<string, { count: number; bits: Uint8Array }>([
    [ctx.self, { count: rules.length, bits: mine }],
  ])
  for (const q of ch.parties) {
    if (q === ctx.self) continue
    const m = await recvMessage(ch, q, tag)
    const count = m.header.splits
    if (
      !isInt(count, 0, 1e7) ||
      m.header.rows !== data.rows ||
      m.parts.length !== 1 ||
      m.parts[0].length !== Math.ceil((count * data.rows) / 8)
    ) {
      throw badMessage(q, tag, 'split bits')
    }
    bitsOf.set(q, { count, bits: m.parts[0] })
  }
  const model = part.params as LabelHolderModel
  const out = new Float64Array(data.rows)
  for (let i = 0; i < data.rows; i++) {
    let raw = model.baseScore
    for (const tree of model.trees) {
      let node = tree.nodes[0]
      for (let hops = 0; !('value' in node); hops++) {
        const src = bitsOf.get(node.party)
        if (!src || node.split >= src.count || hops > tree.nodes.length) {
          throw new SyndicateError(
            ERR_SB_DATA,
            `the model references split ${node.split} of ${node.party}, which did not answer`,
            {},
          )
        }
        node = tree.nodes[bitAt(src.bits, node.split * data.rows + i) ? node.left : node.right]
      }
      raw += node.value
    }
    out[i] = sigmoid(raw)
  }
  return out
}

export const secureBoost: VerticalAlgorithm = {
  name: SECUREBOOST_NAME,
  train: (ctx, data) =>
    ctx.self === ctx.labelHolder ? trainLabelHolder(ctx, data) : trainFeatureHolder(ctx, data),
  predict,
}
