/**
 * Split search over gradient histograms, shared by SecureBoost and the federated GBDT. It follows the plaintext
 * baseline (learning/models/gbdt.ts) exactly, so joint and pooled training pick the same splits:
 *   gain = ½·[G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)] − γ,  leaf = −η·G/(H+λ)
 * Features are visited in the joint order (label holder's first, then each feature holder's), value bins
 * cumulatively left to right, missing values first to the right, then (if the node has any) to the left.
 */

export interface SplitParams {
  lambda: number
  gamma: number
  minChildWeight: number
}

/** Histogram layout: feature j has value bins off[j] .. off[j]+nv[j]−1 and its missing bin at off[j]+nv[j]. */
export interface HistLayout {
  off: Int32Array
  nv: Int32Array
  /** Total slots (Σ nv[j] + 1). */
  slots: number
}

export function layoutOf(valueBins: readonly number[]): HistLayout {
  const d = valueBins.length
  const off = new Int32Array(d + 1)
  const nv = Int32Array.from(valueBins)
  for (let j = 0; j < d; j++) off[j + 1] = off[j] + nv[j] + 1
  return { off, nv, slots: off[d] }
}

export interface Hist {
  g: Float64Array
  h: Float64Array
}

export function emptyHist(slots: number): Hist {
  return { g: new Float64Array(slots), h: new Float64Array(slots) }
}

/** parent − child, slot by slot (the histogram subtraction trick). */
export function subtractHist(parent: Hist, child: Hist): Hist {
  const g = new Float64Array(parent.g.length)
  const h = new Float64Array(parent.h.length)
  for (let s = 0; s < g.length; s++) {
    g[s] = parent.g[s] - child.g[s]
    h[s] = parent.h[s] - child.h[s]
  }
  return { g, h }
}

export interface SplitChoice {
  gain: number
  /** Joint feature index (into the layout). */
  feature: number
  /** Rows with bin <= `bin` go left. */
  bin: number
  missingLeft: boolean
}

export function bestSplit(
  hist: Hist,
  layout: HistLayout,
  G: number,
  H: number,
  p: SplitParams,
): SplitChoice | undefined {
  const parent = (G * G) / (H + p.lambda)
  let best: SplitChoice | undefined
  for (let j = 0; j < layout.nv.length; j++) {
    const nv = layout.nv[j]
    if (nv < 2) continue
    const ms = layout.off[j] + nv
    const mg = hist.g[ms]
    const mh = hist.h[ms]
    // Every row has a positive Hessian, so missing mass means missing rows (fixed-point sums included).
    const hasMissing = mh > 0
    let gl = 0
    let hl = 0
    for (let b = 0; b < nv - 1; b++) {
      gl += hist.g[layout.off[j] + b]
      hl += hist.h[layout.off[j] + b]
      for (let dir = 0; dir < (hasMissing ? 2 : 1); dir++) {
        const GL = dir === 1 ? gl + mg : gl
        const HL = dir === 1 ? hl + mh : hl
        const GR = G - GL
        const HR = H - HL
        if (HL < p.minChildWeight || HR < p.minChildWeight) continue
        const gain = 0.5 * ((GL * GL) / (HL + p.lambda) + (GR * GR) / (HR + p.lambda) - parent) - p.gamma
        if (gain > 1e-12 && (!best || gain > best.gain)) {
          best = { gain, feature: j, bin: b, missingLeft: hasMissing ? dir === 1 : HL >= HR }
        }
      }
    }
  }
  return best
}

export function leafValue(G: number, H: number, lambda: number, learningRate: number): number {
  return (-learningRate * G) / (H + lambda)
}

/** Adds rows' (g, h) into `hist` for the features in `cols` of a row-major bin matrix with `d` columns. */
export function accumulate(
  hist: Hist,
  layout: HistLayout,
  firstFeature: number,
  bins: Uint8Array,
  d: number,
  rows: ArrayLike<number>,
  g: Float64Array,
  h: Float64Array,
): void {
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k]
    const base = r * d
    for (let j = 0; j < d; j++) {
      const s = layout.off[firstFeature + j] + bins[base + j]
      hist.g[s] += g[r]
      hist.h[s] += h[r]
    }
  }
}
