/**
 * Histogram gradient-boosted trees for binary log-loss (XGBoost-style second-order boosting). Features are
 * bucketed once into at most maxBins quantile bins; each node's split is found from per-bin gradient and
 * Hessian sums (the larger child's histogram is the parent's minus the smaller's). Missing values have their
 * own bin and each split learns which side they go to.
 *   gain = ½·[G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)] − γ,  leaf = −η·G/(H+λ)
 */
import { SyndicateError } from '../../crypto/errors.ts'
import { binMatrix, fitBinning } from '../preprocess/binning.ts'
import { createRng } from '../random.ts'
import { checkTrainingData, logit, sigmoid } from './math.ts'
import type { GbdtModel, RegressionTree } from './types.ts'

export interface GbdtOptions {
  /** Number of trees (default 100). */
  trees?: number
  /** Maximum depth; depth d gives up to 2^d leaves (default 3). */
  maxDepth?: number
  /** Shrinkage η applied to every leaf (default 0.1). */
  learningRate?: number
  /** Minimum Hessian sum in each child (default 1). */
  minChildWeight?: number
  /** L2 on leaf values, λ (default 1). */
  lambda?: number
  /** Minimum gain to split, γ (default 0). */
  gamma?: number
  /** Quantile bins per feature, 2..255 (default 64). */
  maxBins?: number
  /** Row share sampled per tree without replacement (default 1) and feature share per tree (default 1). */
  subsample?: number
  colsample?: number
  seed?: number
}

interface Defaults {
  trees: number
  maxDepth: number
  learningRate: number
  minChildWeight: number
  lambda: number
  gamma: number
  maxBins: number
  subsample: number
  colsample: number
  seed: number
}

function resolve(o: GbdtOptions): Defaults {
  const p: Defaults = {
    trees: o.trees ?? 100,
    maxDepth: o.maxDepth ?? 3,
    learningRate: o.learningRate ?? 0.1,
    minChildWeight: o.minChildWeight ?? 1,
    lambda: o.lambda ?? 1,
    gamma: o.gamma ?? 0,
    maxBins: o.maxBins ?? 64,
    subsample: o.subsample ?? 1,
    colsample: o.colsample ?? 1,
    seed: o.seed ?? 0,
  }
  const bad =
    !(Number.isInteger(p.trees) && p.trees >= 1) ||
    !(Number.isInteger(p.maxDepth) && p.maxDepth >= 1 && p.maxDepth <= 16) ||
    !(p.learningRate > 0) ||
    !(p.minChildWeight >= 0) ||
    !(p.lambda >= 0) ||
    !(p.gamma >= 0) ||
    !(p.subsample > 0 && p.subsample <= 1) ||
    !(p.colsample > 0 && p.colsample <= 1)
  if (bad)
    throw new SyndicateError('ERR_LEARN_PARAMS', `Invalid GBDT hyper-parameters: ${JSON.stringify(p)}.`)
  return p
}

/** Per-bin [gradient, Hessian, count] triples for all features, laid out by feature offset. */
type Hist = Float64Array

interface Split {
  gain: number
  feature: number
  bin: number
  missingLeft: boolean
}

export function trainGbdt(
  X: Float64Array,
  y: Uint8Array,
  features: string[],
  opts: GbdtOptions = {},
): GbdtModel {
  checkTrainingData(X, y, features)
  const p = resolve(opts)
  const n = y.length
  const d = features.length
  const binning = fitBinning(X, n, d, p.maxBins)
  const B = binMatrix(X, n, d, binning)
  // Feature j uses histogram slots off[j] .. off[j] + edges + 1 (value bins, then the missing bin).
  const off = new Int32Array(d + 1)
  for (let j = 0; j < d; j++) off[j + 1] = off[j] + binning.edges[j].length + 2
  const slots = off[d]

  let pos = 0
  for (let i = 0; i < n; i++) pos += y[i]
  const baseScore = logit(pos / n)
  const F = new Float64Array(n).fill(baseScore)
  const g = new Float64Array(n)
  const h = new Float64Array(n)
  const rng = createRng(p.seed)
  const rows = new Uint32Array(n)
  const trees: RegressionTree[] = []
  const lam = p.lambda

  const buildHist = (start: number, end: number, active: Uint8Array): Hist => {
    const hist = new Float64Array(slots * 3)
    for (let k = start; k < end; k++) {
      const r = rows[k]
      const gi = g[r]
      const hi = h[r]
      const base = r * d
      for (let j = 0; j < d; j++) {
        if (!active[j]) continue
        const s = 3 * (off[j] + B[base + j])
        hist[s] += gi
        hist[s + 1] += hi
        hist[s + 2] += 1
      }
    }
    return hist
  }

  const bestSplit = (hist: Hist, G: number, H: number, active: Uint8Array): Split | undefined => {
    const parent = (G * G) / (H + lam)
    let best: Split | undefined
    for (let j = 0; j < d; j++) {
      if (!active[j]) continue
      const nv = binning.edges[j].length + 1
      if (nv < 2) continue
      const ms = 3 * (off[j] + nv)
      const mg = hist[ms]
      const mh = hist[ms + 1]
      const hasMissing = hist[ms + 2] > 0
      let gl = 0
      let hl = 0
      for (let b = 0; b < nv - 1; b++) {
        const s = 3 * (off[j] + b)
        gl += hist[s]
        hl += hist[s + 1]
        // Missing to the right, then (if any are missing) to the left.
        for (let dir = 0; dir < (hasMissing ? 2 : 1); dir++) {
          const GL = dir === 1 ? gl + mg : gl
          const HL = dir === 1 ? hl + mh : hl
          const GR = G - GL
          const HR = H - HL
          if (HL < p.minChildWeight || HR < p.minChildWeight) continue
          const gain = 0.5 * ((GL * GL) / (HL + lam) + (GR * GR) / (HR + lam) - parent) - p.gamma
          if (gain > 1e-12 && (!best || gain > best.gain)) {
            // Without training rows missing, unseen missing values follow the heavier child.
            best = { gain, feature: j, bin: b, missingLeft: hasMissing ? dir === 1 : HL >= HR }
          }
        }
      }
    }
    return best
  }

  for (let t = 0; t < p.trees; t++) {
    for (let i = 0; i < n; i++) {
      const q = sigmoid(F[i])
      g[i] = q - y[i]
      h[i] = q * (1 - q)
    }
    let m = n
    for (let i = 0; i < n; i++) rows[i] = i
    if (p.subsample < 1) {
      m = Math.max(1, Math.round(n * p.subsample))
      for (let i = 0; i < m; i++) {
        const k = i + rng.int(n - i)
        const tmp = rows[i]
        rows[i] = rows[k]
        rows[k] = tmp
      }
      rows.subarray(0, m).sort()
    }
    const active = new Uint8Array(d).fill(1)
    if (p.colsample < 1) {
      const keep = Math.max(1, Math.round(d * p.colsample))
      const perm = Array.from({ length: d }, (_, j) => j)
      for (let i = 0; i < keep; i++) {
        const k = i + rng.int(d - i)
        ;[perm[i], perm[k]] = [perm[k], perm[i]]
      }
      active.fill(0)
      for (let i = 0; i < keep; i++) active[perm[i]] = 1
    }

    const tree: Required<RegressionTree> = {
      feature: [],
      threshold: [],
      left: [],
      right: [],
      missingLeft: [],
      value: [],
      cover: [],
    }
    const splitBin: number[] = []
    const newNode = (cover: number): number => {
      tree.feature.push(-1)
      tree.threshold.push(0)
      tree.left.push(-1)
      tree.right.push(-1)
      tree.missingLeft.push(false)
      tree.value.push(0)
      tree.cover.push(cover)
      splitBin.push(-1)
      return tree.feature.length - 1
    }
    const grow = (
      start: number,
      end: number,
      hist: Hist | undefined,
      G: number,
      H: number,
      depth: number,
    ): number => {
      const node = newNode(end - start)
      const split = hist && depth < p.maxDepth ? bestSplit(hist, G, H, active) : undefined
      if (!split) {
        tree.value[node] = (-p.learningRate * G) / (H + lam)
        return node
      }
      const { feature: j, bin, missingLeft } = split
      const missing = binning.edges[j].length + 1
      // Partition rows[start:end] in place: left rows first.
      let mid = start
      for (let k = start; k < end; k++) {
        const r = rows[k]
        const b = B[r * d + j]
        if (b === missing ? missingLeft : b <= bin) {
          rows[k] = rows[mid]
          rows[mid] = r
          mid++
        }
      }
      let GL = 0
      let HL = 0
      for (let k = start; k < mid; k++) {
        GL += g[rows[k]]
        HL += h[rows[k]]
      }
      const leaves = depth + 1 >= p.maxDepth
      let histL: Hist | undefined
      let histR: Hist | undefined
      if (!leaves) {
        const leftSmaller = mid - start <= end - mid
        const small = leftSmaller ? buildHist(start, mid, active) : buildHist(mid, end, active)
        const large = new Float64Array(hist!.length)
        for (let s = 0; s < large.length; s++) large[s] = hist![s] - small[s]
        histL = leftSmaller ? small : large
        histR = leftSmaller ? large : small
      }
      tree.feature[node] = j
      tree.threshold[node] = binning.edges[j][bin]
      tree.missingLeft[node] = missingLeft
      splitBin[node] = bin
      tree.left[node] = grow(start, mid, histL, GL, HL, depth + 1)
      tree.right[node] = grow(mid, end, histR, G - GL, H - HL, depth + 1)
      return node
    }

    let G = 0
    let H = 0
    for (let k = 0; k < m; k++) {
      G += g[rows[k]]
      H += h[rows[k]]
    }
    grow(0, m, buildHist(0, m, active), G, H, 0)
    // Update every row's raw score through the binned tree (also rows left out by subsampling).
    for (let i = 0; i < n; i++) {
      let node = 0
      while (tree.feature[node] >= 0) {
        const j = tree.feature[node]
        const b = B[i * d + j]
        const goLeft = b === binning.edges[j].length + 1 ? tree.missingLeft[node] : b <= splitBin[node]
        node = goLeft ? tree.left[node] : tree.right[node]
      }
      F[i] += tree.value[node]
    }
    trees.push(tree)
  }
  return { kind: 'gbdt', features: [...features], preprocessing: {}, baseScore, trees }
}
