/**
 * Weight of evidence and information value for scorecards. For bin b: WOE_b = ln(%good_b / %bad_b) where
 * %good_b is the share of all goods (label 0) falling in b; a positive WOE means lower risk than average.
 * IV = Σ_b (%good_b − %bad_b)·WOE_b. Counts get +0.5 (Laplace) so that a pure bin has a finite WOE.
 */
import { binOf, quantileEdges } from './binning.ts'

export interface WoeBinning {
  /** Bin thresholds (bin k holds edges[k-1] < x <= edges[k]). */
  edges: number[]
  /** WOE per value bin (edges.length + 1 entries). */
  woe: number[]
  /** WOE for missing values (0 = neutral when training had none). */
  missingWoe: number
  /** Information value of the feature: < 0.02 useless, 0.02–0.1 weak, 0.1–0.3 medium, > 0.3 strong. */
  iv: number
  goods: number[]
  bads: number[]
}

export function fitWoe(values: ArrayLike<number>, y: ArrayLike<number>, maxBins = 10): WoeBinning {
  const edges = quantileEdges(values, maxBins)
  const k = edges.length + 1
  const goods = new Array(k + 1).fill(0)
  const bads = new Array(k + 1).fill(0)
  for (let i = 0; i < values.length; i++) {
    const b = Number.isNaN(values[i]) ? k : binOf(edges, values[i])
    if (y[i] === 1) bads[b]++
    else goods[b]++
  }
  const used = goods[k] + bads[k] > 0 ? k + 1 : k
  const G = goods.slice(0, used).reduce((s, v) => s + v + 0.5, 0)
  const B = bads.slice(0, used).reduce((s, v) => s + v + 0.5, 0)
  const woeOf = (b: number) => Math.log((goods[b] + 0.5) / G / ((bads[b] + 0.5) / B))
  let iv = 0
  const woeAll: number[] = []
  for (let b = 0; b < used; b++) {
    const w = woeOf(b)
    woeAll.push(w)
    iv += ((goods[b] + 0.5) / G - (bads[b] + 0.5) / B) * w
  }
  return {
    edges,
    woe: woeAll.slice(0, k),
    missingWoe: used > k ? woeAll[k] : 0,
    iv,
    goods: goods.slice(0, k),
    bads: bads.slice(0, k),
  }
}

/** WOE value of x. */
export function woeOf(w: WoeBinning, x: number): number {
  return Number.isNaN(x) ? w.missingWoe : w.woe[binOf(w.edges, x)]
}
