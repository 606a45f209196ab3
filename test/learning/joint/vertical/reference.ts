/** Plaintext twins of the joint LR algorithms: the same SGD, batch order, clipping and sigmoid, pooled. */
import { clipped, epochOrders } from '../../../../learning/joint/vertical/common.ts'
import { sigmoid } from '../../../../learning/models/math.ts'

export function pooledSgd(
  X: Float64Array,
  y: Uint8Array,
  d: number,
  opts: {
    epochs: number
    batchSize: number
    learningRate: number
    seed: number
    clip: number
    sig?: (x: number) => number
  },
): Float64Array {
  const n = y.length
  const Z = clipped(X, opts.clip)
  const sig = opts.sig ?? sigmoid
  const w = new Float64Array(d + 1)
  const g = new Float64Array(d + 1)
  const l2 = 1 / n
  let e = 0
  for (const order of epochOrders(n, opts.epochs, opts.seed)) {
    const lr = opts.learningRate / Math.sqrt(1 + e++)
    for (let b = 0; b < n; b += opts.batchSize) {
      const end = Math.min(n, b + opts.batchSize)
      g.fill(0)
      for (let k = b; k < end; k++) {
        const o = order[k] * d
        let s = w[d]
        for (let j = 0; j < d; j++) s += w[j] * Z[o + j]
        const r = sig(s) - y[order[k]]
        for (let j = 0; j < d; j++) g[j] += r * Z[o + j]
        g[d] += r
      }
      const m = end - b
      for (let j = 0; j < d; j++) w[j] -= lr * (g[j] / m + l2 * w[j])
      w[d] -= (lr * g[d]) / m
    }
  }
  return w
}

/** The joint model's weights in pooled order (parties' blocks in order, then the label holder's bias). */
export function pooledWeights(parts: { params: unknown }[]): number[] {
  const ps = parts.map((p) => p.params as { weights: number[]; bias?: number })
  return [...ps.flatMap((p) => p.weights), ps[0].bias as number]
}
