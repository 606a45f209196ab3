import { describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { encodeFixed } from '../../../crypto/fixed.ts'
import { DealerSource } from '../../../crypto/mpc/dealer.ts'
import { MpcSession } from '../../../crypto/mpc/session.ts'

const N = 4096
const plan = [{ kind: 'mul', n: N } as const]

/** Runs x∘y with x from a, y from b, an external dealer d; the product is revealed to b only. Returns what a received from b. */
async function viewOfA(x: number[], y: number[]): Promise<{ view: Uint8Array[]; product: Float64Array }> {
  const channels = createMemoryChannels(['a', 'b', 'd'])
  const view: Uint8Array[] = []
  const a = channels.get('a')!
  const recording: PartyChannel = {
    ...a,
    self: a.self,
    parties: a.parties,
    recv: async (from, tag) => {
      const m = await a.recv(from, tag)
      if (from === 'b') view.push(m)
      return m
    },
  }
  const run = async (ch: PartyChannel, mine?: number[]) => {
    const source = await DealerSource.create(ch, { dealer: 'd', computeParties: ['a', 'b'] })
    await source.prepare(plan)
    const s = await MpcSession.create(ch, { source, parties: ['a', 'b'] })
    const xs = s.share('a', 1, N, ch.self === 'a' ? mine : undefined)
    const ys = s.share('b', 1, N, ch.self === 'b' ? mine : undefined)
    return s.reveal(await s.mul(xs, ys), 'b')
  }
  const dealer = (async () =>
    (await DealerSource.create(channels.get('d')!, { dealer: 'd', computeParties: ['a', 'b'] })).serve(
      plan,
    ))()
  const [, product] = await Promise.all([run(recording, x), run(channels.get('b')!, y), dealer])
  return { view, product: product! }
}

function histogram(msgs: Uint8Array[]): number[] {
  const h = new Array(256).fill(0)
  for (const m of msgs) for (const b of m) h[b]++
  return h
}

/** Pearson chi-square of a byte histogram against uniform (255 degrees of freedom). */
function chiSquareUniform(h: number[]): number {
  const total = h.reduce((s, v) => s + v, 0)
  const e = total / 256
  return h.reduce((s, v) => s + (v - e) ** 2 / e, 0)
}

describe("a party's view is masked by fresh randomness", () => {
  it('messages a receives are uniform bytes, fresh on every run, and independent of b input', async () => {
    const x = Array.from({ length: N }, (_, i) => (i % 7) - 3)
    const zeros = new Array(N).fill(0)
    const large = Array.from({ length: N }, (_, i) => 1e6 + i)
    const r1 = await viewOfA(x, zeros)
    const r2 = await viewOfA(x, zeros)
    const r3 = await viewOfA(x, large)
    // the protocol works (b learns x∘y)
    expect(r3.product[5]).toBeCloseTo(x[5] * large[5], 3)
    for (const { view } of [r1, r2, r3]) {
      // a receives exactly the masked openings from b: e_b and f_b, 2·N ring elements, one message
      expect(view.length).toBe(1)
      expect(view[0].byteLength).toBe(16 * N)
      // 99.9999% quantile of chi-square(255) is about 376: a fixed or structured input would be far beyond
      expect(chiSquareUniform(histogram(view))).toBeLessThan(376)
    }
    // fresh randomness: the same inputs give unrelated views
    let equal = 0
    for (let i = 0; i < r1.view[0].length; i++) if (r1.view[0][i] === r2.view[0][i]) equal++
    expect(equal / r1.view[0].length).toBeLessThan(0.01)
    // the input does not show through: its encoding appears nowhere in the view
    const enc = new Uint8Array(encodeFixed(large, 16).buffer)
    const hay = Buffer.from(r3.view[0])
    expect(hay.indexOf(Buffer.from(enc.subarray(8 * 100, 8 * 101)))).toBe(-1)
    // and the two inputs' views are indistinguishable: two-sample chi-square on the byte histograms
    const h1 = histogram(r1.view)
    const h3 = histogram(r3.view)
    let chi = 0
    for (let b = 0; b < 256; b++) if (h1[b] + h3[b] > 0) chi += (h1[b] - h3[b]) ** 2 / (h1[b] + h3[b])
    expect(chi).toBeLessThan(376)
  })
})
