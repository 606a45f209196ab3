import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { centre } from '../../../../crypto/he/mask.ts'
import { GradientKeys, HistogramEngine } from '../../../../learning/joint/trees/poly.ts'

describe('BFV coefficient-encoded histograms', () => {
  let keys: GradientKeys
  let engine: HistogramEngine
  beforeAll(async () => {
    keys = await GradientKeys.generate()
    engine = await HistogramEngine.fromBundle(keys.bundle)
  })
  afterAll(() => {
    engine?.free()
    keys?.free()
  })

  it('returns the exact per-bin sums of signed values (cached or not), every other coefficient masked afresh', () => {
    const N = keys.coeffs.degree
    const t = keys.coeffs.t
    const widths = [5, 3]
    const n = Math.floor(N / 5)
    const rows = 2 * n + 17 // three chunks, the last partial
    const value = (i: number) => BigInt((i % 2 ? -1 : 1) * (i * 7919 + 13)) * 2n ** 20n
    const bin = (f: number, r: number) => (r * (f + 3) + f) % widths[f]
    const chunks: Uint8Array[] = []
    for (let s = 0; s < rows; s += n) {
      const c = new BigUint64Array(N)
      for (let i = s; i < Math.min(rows, s + n); i++) c[i - s] = BigInt.asUintN(64, ((value(i) % t) + t) % t)
      chunks.push(keys.encrypt(c))
    }
    const ids = Uint32Array.from({ length: rows }, (_, i) => i)
    // Reusable layout: the first call builds and caches the indicator plaintexts, the second loads them.
    const first = engine.histograms(chunks, ids, n, widths, bin, true).map((b) => keys.decrypt(b))
    const second = engine.histograms(chunks, ids, n, widths, bin, true).map((b) => keys.decrypt(b))
    widths.forEach((w, f) => {
      for (let b = 0; b < w; b++) {
        let want = 0n
        for (let i = 0; i < rows; i++) if (bin(f, i) === b) want += value(i)
        expect(centre(first[f][b * n + n - 1], t)).toBe(want)
        expect(second[f][b * n + n - 1]).toBe(first[f][b * n + n - 1])
      }
      // Cross terms would reveal partial sums over other row sets: they are fresh uniform values each time.
      let same = 0
      for (let k = 0; k < N; k++) if (k % n !== n - 1 && first[f][k] === second[f][k]) same++
      expect(same).toBe(0)
    })
  }, 60_000)

  it('refuses a bundle made for another preset', async () => {
    const { HeKeyOwner } = await import('../../../../crypto/he/index.ts')
    const other = await HeKeyOwner.generate('bfv-4096', { relin: false })
    try {
      await expect(HistogramEngine.fromBundle(other.publicBundle())).rejects.toMatchObject({
        code: 'ERR_HE_PARAMS_MISMATCH',
      })
    } finally {
      other.free()
    }
  })
})
