import { randomFillSync } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { encodeFixed } from '../../../crypto/fixed.ts'
import { HeTripleSource } from '../../../crypto/mpc/he-triples.ts'
import { ringAdd, ringMatmul, ringMul, ringTranspose } from '../../../crypto/mpc/ring.ts'
import { MpcSession } from '../../../crypto/mpc/session.ts'
import type { CorrelationRequest } from '../../../crypto/mpc/source.ts'
import { ERR_MPC_BAD_MESSAGE } from '../../../crypto/mpc/wire.ts'
import { maxAbsDiff, plainMatmul } from './helpers.ts'

const rowsOf = (x: BigUint64Array, idx: Uint32Array, cols: number) => {
  const out = new BigUint64Array(idx.length * cols)
  for (let k = 0; k < idx.length; k++) out.set(x.subarray(idx[k] * cols, idx[k] * cols + cols), k * cols)
  return out
}

describe('fixed-matrix correlations (owned products over row batches, BFV)', () => {
  const channels = createMemoryChannels(['a', 'b'])
  let sources: HeTripleSource[] = []
  const both = <T>(fn: (s: HeTripleSource, i: number) => Promise<T>) => Promise.all(sources.map(fn))

  beforeAll(async () => {
    sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p) as PartyChannel)))
  }, 60_000)
  afterAll(() => {
    for (const s of sources) s.dispose()
  })

  it('forward and backward correlations are exact in Z(2^64) for every batch, across ciphertext chunks', async () => {
    // more rows than one ciphertext holds (8192 slots), full 64-bit entries, batches that skip some rows
    const rows = 8300
    const cols = 3
    const x = new BigUint64Array(rows * cols)
    randomFillSync(x)
    const fixed = await both((s, i) => s.fixedMatrix('b', i === 1 ? x : undefined, rows, cols))
    try {
      const order = Uint32Array.from({ length: rows }, (_, i) => (i * 7919) % rows) // a permutation
      const batches = [order.slice(0, 1000), order.slice(1000, 1001), order.slice(5000, 8290)]
      const seenBetas: BigUint64Array[] = []
      for (let epoch = 0; epoch < 2; epoch++) {
        const [f0, f1] = await Promise.all(fixed.map((f) => f.forward(batches)))
        const [b0, b1] = await Promise.all(fixed.map((f) => f.backward(batches)))
        for (const [j, idx] of batches.entries()) {
          const xb = rowsOf(x, idx, cols)
          const m = idx.length
          // the owner's share of the mask is zero: the peer's random values alone mask w and r online
          expect(f1[j].b.every((v) => v === 0n)).toBe(true)
          expect(b1[j].b.every((v) => v === 0n)).toBe(true)
          expect(ringAdd(f0[j].c, f1[j].c)).toEqual(ringMatmul(xb, f0[j].b, m, cols, 1))
          expect(ringAdd(b0[j].c, b1[j].c)).toEqual(
            ringMatmul(ringTranspose(xb, m, cols), b0[j].b, cols, m, 1),
          )
          expect(b0[j].b).toHaveLength(m)
        }
        seenBetas.push(f0[0].b)
      }
      // fresh masks every call
      expect(seenBetas[0]).not.toEqual(seenBetas[1])
    } finally {
      for (const f of fixed) f.dispose()
    }
  }, 60_000)

  it('drives owned products online: X_B·w and X_Bᵀ·r with shared w and r, X never shared', async () => {
    const rows = 50
    const cols = 4
    const xs = Array.from({ length: rows * cols }, (_, i) => ((i * 37) % 23) / 4 - 2.5)
    const w = [0.5, -1.25, 2, 0.125]
    const r = Array.from({ length: 20 }, (_, i) => (i % 5) / 8 - 0.25)
    const idx = Uint32Array.from({ length: 20 }, (_, i) => 49 - 2 * i)
    const xb = Array.from(idx).flatMap((row) => xs.slice(row * cols, row * cols + cols))
    const xbT = Array.from({ length: cols * 20 }, (_, i) => xb[(i % 20) * cols + Math.floor(i / 20)])
    const out = await Promise.all(
      sources.map(async (source, i) => {
        const ch = channels.get(['a', 'b'][i]) as PartyChannel
        const s = await MpcSession.create(ch, { source, tag: 'fixed-online' })
        const own = ch.self === 'a' ? encodeFixed(xs, 16) : undefined
        const f = await source.fixedMatrix('a', own, rows, cols)
        try {
          const [fwd] = await f.forward([idx])
          const [bwd] = await f.backward([idx])
          const W = s.share('b', cols, 1, ch.self === 'b' ? w : undefined)
          const R = s.share('b', 20, 1, ch.self === 'b' ? r : undefined)
          const ownB = own ? rowsOf(own, idx, cols) : undefined
          const u = await s.matmulOwnedRing('a', ownB, 20, W.share, cols, 1, fwd)
          const ownT = ownB ? ringTranspose(ownB, 20, cols) : undefined
          const g = await s.matmulOwnedRing('a', ownT, cols, R.share, 20, 1, bwd)
          const U = await s.reveal(await s.truncate({ rows: 20, cols: 1, share: u }))
          const G = await s.reveal(await s.truncate({ rows: cols, cols: 1, share: g }))
          return { U: U!, G: G! }
        } finally {
          f.dispose()
        }
      }),
    )
    expect(maxAbsDiff(out[0].U, plainMatmul(xb, w, 20, cols, 1))).toBeLessThan(1e-3)
    expect(maxAbsDiff(out[1].G, plainMatmul(xbT, r, cols, 20, 1))).toBeLessThan(1e-3)
  }, 60_000)

  it('refuses overlapping or out-of-range batches, bad shapes and an owner outside the pair', async () => {
    const x = new BigUint64Array(20)
    const fixed = await both((s, i) => s.fixedMatrix('a', i === 0 ? x : undefined, 10, 2))
    try {
      const code = (c: string) => (e: unknown) => isSyndicateError(e, c)
      await expect(fixed[0].forward([Uint32Array.of(1, 2), Uint32Array.of(2)])).rejects.toSatisfy(
        code('ERR_MPC_SHAPE'),
      )
      await expect(fixed[1].backward([Uint32Array.of(10)])).rejects.toSatisfy(code('ERR_MPC_SHAPE'))
      await expect(sources[0].fixedMatrix('a', x, 10, 3)).rejects.toSatisfy(code('ERR_MPC_SHAPE'))
      await expect(sources[0].fixedMatrix('a', x, 1, 1025)).rejects.toSatisfy(code('ERR_MPC_SHAPE'))
      await expect(sources[0].fixedMatrix('c', undefined, 10, 2)).rejects.toSatisfy(
        code('ERR_MPC_UNSUPPORTED'),
      )
    } finally {
      for (const f of fixed) f.dispose()
    }
  })

  it('rejects malformed encrypted columns from the owner and malformed replies from the peer', async () => {
    const ch = createMemoryChannels(['p', 'q'])
    const pair = await Promise.all([HeTripleSource.create(ch.get('p')!), HeTripleSource.create(ch.get('q')!)])
    // a frame with three parts (one column, three CRT primes) that are not ciphertexts
    const junk = new Uint8Array([0, 0, 0, 3, 0, 0, 0, 1, 7, 0, 0, 0, 1, 7, 0, 0, 0, 1, 7])
    const bad = (e: unknown) => isSyndicateError(e, ERR_MPC_BAD_MESSAGE)
    try {
      // a well-formed setup (id mpc/he/0 on both), then garbage where the peer's forward replies belong
      const x = new BigUint64Array(5).fill(3n)
      const fixed = await Promise.all([
        pair[0].fixedMatrix('p', x, 5, 1),
        pair[1].fixedMatrix('p', undefined, 5, 1),
      ])
      const forward = fixed[0].forward([Uint32Array.of(0, 1)])
      await ch.get('q')!.send('p', 'mpc/he/0/f0/0', junk)
      await expect(forward).rejects.toSatisfy(bad)
      for (const f of fixed) f.dispose()
      // garbage instead of the owner's encrypted columns (q's next id is mpc/he/1)
      const pending = pair[1].fixedMatrix('p', undefined, 5, 1)
      await ch.get('p')!.send('q', 'mpc/he/1/x', junk)
      await expect(pending).rejects.toSatisfy(bad)
    } finally {
      for (const s of pair) s.dispose()
    }
  })

  it('prepares many short elementwise requests in shared ciphertexts, each triple exact', async () => {
    const plan: CorrelationRequest[] = [
      { kind: 'mul', n: 3000 },
      { kind: 'mul', n: 3000 },
      { kind: 'bits', n: 100 },
      { kind: 'mul', n: 7 },
      { kind: 'matmul', m: 2, k: 3, n: 1 },
      { kind: 'mul', n: 3000 },
    ]
    await both((s) => s.prepare(plan))
    expect(sources[0].stocked()).toBe(plan.length)
    for (const n of [3000, 3000, 7, 3000]) {
      const [t0, t1] = await both((s) => s.mulTriple(n))
      expect(t0.c).toHaveLength(n)
      expect(ringAdd(t0.c, t1.c)).toEqual(ringMul(ringAdd(t0.a, t1.a), ringAdd(t0.b, t1.b)))
    }
    const bits = ringAdd(...((await both((s) => s.randomBits(100))) as [BigUint64Array, BigUint64Array]))
    expect(bits.every((v) => v === 0n || v === 1n)).toBe(true)
    const [m0, m1] = await both((s) => s.matmulTriple(2, 3, 1))
    expect(ringAdd(m0.c, m1.c)).toEqual(ringMatmul(ringAdd(m0.a, m1.a), ringAdd(m0.b, m1.b), 2, 3, 1))
    expect(sources[0].stocked()).toBe(0)
  }, 60_000)
})
