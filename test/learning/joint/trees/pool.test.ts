import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { centre } from '../../../../crypto/he/mask.ts'
import { GradientKeys } from '../../../../learning/joint/trees/poly.ts'
import { HistogramPool } from '../../../../learning/joint/trees/pool.ts'

describe('histogram worker pool', () => {
  let keys: GradientKeys
  let pool: HistogramPool
  const d = 3
  const rows = 1500
  const widths = [4, 7, 2]
  const bins = new Uint8Array(rows * d)
  for (let r = 0; r < rows; r++)
    for (let f = 0; f < d; f++) bins[r * d + f] = (r * (2 * f + 3) + f) % widths[f]
  beforeAll(async () => {
    keys = await GradientKeys.generate()
    pool = await HistogramPool.start(keys.bundle, bins, d, 2)
  })
  afterAll(async () => {
    await pool?.close()
    keys?.free()
  })

  it('splits the chunks over two workers and merges them into the exact per-bin sums', async () => {
    const N = keys.coeffs.degree
    const t = keys.coeffs.t
    const n = 150 // any n with widths·n <= N: four chunks here
    // A child node: every third row, chunks fed out of order.
    const node = Uint32Array.from({ length: rows / 3 }, (_, i) => 3 * i + 1)
    const value = (r: number) => BigInt((r % 5) - 2) * 2n ** 40n + BigInt(r)
    const chunks: Uint8Array[] = []
    for (let s = 0; s < node.length; s += n) {
      const c = new BigUint64Array(N)
      for (let i = s; i < Math.min(node.length, s + n); i++) {
        c[i - s] = BigInt.asUintN(64, ((value(node[i]) % t) + t) % t)
      }
      chunks.push(keys.encrypt(c))
    }
    expect(chunks.length).toBeGreaterThan(2)
    const h = pool.node(node, n, widths, false)
    try {
      for (let c = chunks.length - 1; c >= 0; c--) h.add(chunks[c], c)
      const out = (await h.finish()).map((b) => keys.decrypt(b))
      widths.forEach((w, f) => {
        for (let b = 0; b < w; b++) {
          let want = 0n
          for (const r of node) if (bins[r * d + f] === b) want += value(r)
          expect(centre(out[f][b * n + n - 1], t)).toBe(want)
        }
      })
    } finally {
      h.free()
    }
  }, 60_000)

  it('reports a missing chunk and a malformed one with their error codes', async () => {
    const N = keys.coeffs.degree
    const n = Math.floor(N / 7)
    const all = Uint32Array.from({ length: rows }, (_, i) => i)
    const chunk = keys.encrypt(new BigUint64Array(N))
    const missing = pool.node(all, n, widths, false)
    try {
      missing.add(chunk, 0)
      await expect(missing.finish()).rejects.toMatchObject({ code: 'ERR_HE_BAD_INPUT' })
    } finally {
      missing.free()
    }
    const malformed = pool.node(all.subarray(0, n), n, widths, false)
    try {
      malformed.add(chunk.subarray(0, 100), 0)
      await expect(malformed.finish()).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_HE_/) })
    } finally {
      malformed.free()
    }
  }, 60_000)
})
