import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { encodeFixed } from '../../../crypto/fixed.ts'
import { HeTripleSource } from '../../../crypto/mpc/he-triples.ts'
import { lessThanZero, relu } from '../../../crypto/mpc/nonlinear.ts'
import { ringAdd, ringMatmul, ringMul } from '../../../crypto/mpc/ring.ts'
import { MpcSession } from '../../../crypto/mpc/session.ts'
import { ERR_MPC_BAD_MESSAGE, unframe } from '../../../crypto/mpc/wire.ts'
import { maxAbsDiff, plainMatmul } from './helpers.ts'

describe('dealer-free triples with BFV (two parties)', () => {
  const channels = createMemoryChannels(['a', 'b'])
  let sources: HeTripleSource[] = []

  beforeAll(async () => {
    sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p) as PartyChannel)))
  }, 60_000)
  afterAll(() => {
    for (const s of sources) s.dispose()
  })

  const both = <T>(fn: (s: HeTripleSource) => Promise<T>) => Promise.all(sources.map(fn))

  it('matrix triples are exact in Z(2^64) for every layout (groups, row blocks, column blocks)', async () => {
    for (const [m, k, n] of [
      [3, 4, 2],
      [400, 23, 1],
      [2, 90, 100],
      [300, 3, 40], // more output than one ciphertext: blocks of rows
      [2, 2, 8200], // wider than one ciphertext: blocks of columns
    ]) {
      const [t0, t1] = await both((s) => s.matmulTriple(m, k, n))
      const c = ringMatmul(ringAdd(t0.a, t1.a), ringAdd(t0.b, t1.b), m, k, n)
      expect(ringAdd(t0.c, t1.c)).toEqual(c)
      // each party's A share is its own fresh randomness: shares differ
      expect(t0.a).not.toEqual(t1.a)
    }
  })

  it('elementwise triples and random bits', async () => {
    const [t0, t1] = await both((s) => s.mulTriple(8200))
    expect(ringAdd(t0.c, t1.c)).toEqual(ringMul(ringAdd(t0.a, t1.a), ringAdd(t0.b, t1.b)))
    const [b0, b1] = await both((s) => s.randomBits(2000))
    const bits = ringAdd(b0, b1)
    expect(bits.every((v) => v === 0n || v === 1n)).toBe(true)
    const ones = bits.filter((v) => v === 1n).length
    expect(ones).toBeGreaterThan(850)
    expect(ones).toBeLessThan(1150)
  })

  it('drives the online engine: a prepared secure matrix product with local truncation', async () => {
    const x = Array.from({ length: 12 }, (_, i) => i / 4 - 1)
    const w = [0.5, -2, 1.25]
    const [z] = await Promise.all(
      sources.map(async (source, i) => {
        const ch = channels.get(['a', 'b'][i]) as PartyChannel
        const s = await MpcSession.create(ch, { source, tag: 'he-online' })
        await source.prepare([{ kind: 'matmul', m: 4, k: 3, n: 1 }])
        const X = s.share('a', 4, 3, ch.self === 'a' ? x : undefined)
        const W = s.share('b', 3, 1, ch.self === 'b' ? w : undefined)
        return s.reveal(await s.matmul(X, W))
      }),
    )
    expect(maxAbsDiff(z!, plainMatmul(x, w, 4, 3, 1))).toBeLessThan(1e-3)
  })

  it('owned products: a party multiplies its own plaintext matrix by a shared one, X never shared', async () => {
    // a whole ciphertext's worth of zero rows (sparse features: 1365 rows of k·n = 6 slots fill one) must
    // work like any other block
    const m = 1400
    const x = Array.from({ length: m * 2 }, (_, i) => (i < 2 * 1365 ? 0 : ((i % 7) - 3) / 4))
    const y = [0.5, 1, -1, 2, 0.125, -3]
    const [z, other] = await Promise.all(
      sources.map(async (source, i) => {
        const ch = channels.get(['a', 'b'][i]) as PartyChannel
        const s = await MpcSession.create(ch, { source, tag: 'he-owned' })
        const mine = ch.self === 'a'
        const corr = await source.ownedTriple('a', mine ? encodeFixed(x, 16) : undefined, m, 2, 3)
        const Y = s.share('b', 2, 3, ch.self === 'b' ? y : undefined)
        const before = s.ch.stats().bytesSent
        const Z = await s.matmulOwned('a', mine ? x : undefined, m, Y, corr)
        return { z: await s.reveal(Z), sent: s.ch.stats().bytesSent - before }
      }),
    )
    expect(maxAbsDiff(z.z!, plainMatmul(x, y, m, 2, 3))).toBeLessThan(1e-3)
    // the owner sends nothing online but its share for the reveal; the other party sends Y − B (6 elements) + reveal
    expect(other.sent).toBe(8 * 6 + 8 * 3 * m)
    expect(z.sent).toBe(8 * 3 * m)
  })

  it('dealer-free comparison (arithmetic circuit on random bits) and ReLU', async () => {
    const xs = [-5, -0.001, 0, 0.001, 3]
    const [out] = await Promise.all(
      sources.map(async (source, i) => {
        const ch = channels.get(['a', 'b'][i]) as PartyChannel
        const s = await MpcSession.create(ch, { source, tag: 'he-cmp' })
        const x = s.share('b', 1, 5, ch.self === 'b' ? xs : undefined)
        return { lt: await s.reveal(await lessThanZero(s, x)), relu: await s.reveal(await relu(s, x)) }
      }),
    )
    expect([...out.lt!]).toEqual([1, 1, 0, 0, 0])
    expect(maxAbsDiff(out.relu!, [0, 0, 0, 0.001, 3])).toBeLessThan(1e-4)
  })

  it('replies are switched down to two RNS primes before they leave (noise hidden by rounding)', async () => {
    const ch = createMemoryChannels(['p', 'q'])
    const seen: Uint8Array[] = []
    const q = ch.get('q')!
    const recording: PartyChannel = {
      ...q,
      self: q.self,
      parties: q.parties,
      recv: async (from, tag) => {
        const m = await q.recv(from, tag)
        if (tag.endsWith('/mul')) seen.push(m)
        return m
      },
    }
    const pair = await Promise.all([HeTripleSource.create(ch.get('p')!), HeTripleSource.create(recording)])
    try {
      await Promise.all(pair.map((s) => s.mulTriple(10)))
      const parts = unframe(seen[0], 'p', 'test', () => new Error('bad frame'))
      expect(parts.length).toBe(3) // one reply per CRT prime
      // SEAL header (16) + parms id (32) + 4 size fields + 2 polynomials × 2 primes × 8192 coefficients × 8 bytes
      for (const blob of parts) expect(blob.byteLength).toBeLessThan(2 * 2 * 8192 * 8 + 200)
      for (const blob of parts) expect(blob.byteLength).toBeGreaterThan(2 * 2 * 8192 * 8)
    } finally {
      for (const s of pair) s.dispose()
    }
  })

  it('rejects malformed homomorphic material from the peer', async () => {
    const [a] = sources
    const pending = a.matmulTriple(2, 2, 2)
    await channels
      .get('b')!
      .send('a', `mpc/he/${heCounter(a)}/enc`, new Uint8Array([0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3]))
    await expect(pending).rejects.toThrow(expect.objectContaining({ code: ERR_MPC_BAD_MESSAGE }))
  })
})

/** The id the source will use for its next exchange (its private counter), so the test can forge that message. */
function heCounter(s: HeTripleSource): number {
  return (s as unknown as { counter: number }).counter - 1
}
