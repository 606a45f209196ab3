/**
 * Integrated gradients for a ReLU MLP, computed exactly: along the straight path from the baseline b to the
 * input z the network is piecewise linear in α, so the path integral is a finite sum over the linear pieces
 * (found by following every hidden unit's pre-activation to its next sign change). Completeness holds up to
 * rounding: Σ attributions = f(z) − f(b), f being the output logit.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import type { DenseLayer } from '../models/types.ts'

/** Hard cap on linear pieces; a (32,16) net crosses at most 48 unit boundaries per path, usually far fewer. */
const MAX_PIECES = 100_000

export function integratedGradients(
  layers: DenseLayer[],
  baseline: ArrayLike<number>,
  z: ArrayLike<number>,
): Float64Array {
  const d = z.length
  const delta = new Float64Array(d)
  for (let i = 0; i < d; i++) delta[i] = z[i] - baseline[i]
  const attr = new Float64Array(d)
  const L = layers.length
  let alpha = 0
  for (let piece = 0; alpha < 1; piece++) {
    if (piece >= MAX_PIECES) {
      throw new SyndicateError('ERR_EXPLAIN_NUMERIC', 'Integrated gradients did not converge along the path.')
    }
    // Values and α-derivatives of every layer at the current α, with the activation pattern just past α.
    let a = Float64Array.from({ length: d }, (_, i) => baseline[i] + alpha * delta[i])
    let da = delta
    const masks: Uint8Array[] = []
    let nextAlpha = 1
    for (let l = 0; l < L; l++) {
      const { weights, bias } = layers[l]
      const v = new Float64Array(bias.length)
      const dv = new Float64Array(bias.length)
      for (let o = 0; o < v.length; o++) {
        const w = weights[o]
        let s = bias[o]
        let ds = 0
        for (let i = 0; i < w.length; i++) {
          s += w[i] * a[i]
          ds += w[i] * da[i]
        }
        v[o] = s
        dv[o] = ds
      }
      if (l === L - 1) break
      const mask = new Uint8Array(v.length)
      for (let o = 0; o < v.length; o++) {
        mask[o] = v[o] > 0 || (v[o] === 0 && dv[o] > 0) ? 1 : 0
        // The unit changes sign at α + t with t = −v/dv, if that lies ahead.
        if ((mask[o] && dv[o] < 0) || (!mask[o] && dv[o] > 0)) {
          const t = -v[o] / dv[o]
          if (t > 0) nextAlpha = Math.min(nextAlpha, alpha + t)
        }
      }
      masks.push(mask)
      a = v.map((x, o) => (mask[o] ? x : 0))
      da = dv.map((x, o) => (mask[o] ? x : 0))
    }
    // Input gradient of the output under this activation pattern (backward through the masks).
    let g = Float64Array.from(layers[L - 1].weights[0])
    for (let l = L - 2; l >= 0; l--) {
      const mask = masks[l]
      const w = layers[l].weights
      const next = new Float64Array(w[0].length)
      for (let o = 0; o < w.length; o++) {
        if (!mask[o] || g[o] === 0) continue
        const go = g[o]
        const row = w[o]
        for (let i = 0; i < row.length; i++) next[i] += go * row[i]
      }
      g = next
    }
    if (nextAlpha <= alpha) nextAlpha = Math.min(1, alpha + 1e-12)
    const len = nextAlpha - alpha
    for (let i = 0; i < d; i++) attr[i] += g[i] * delta[i] * len
    alpha = nextAlpha
  }
  return attr
}
