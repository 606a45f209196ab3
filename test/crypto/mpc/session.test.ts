import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../crypto/channel.ts'
import { decodeFixed, encodeFixed } from '../../../crypto/fixed.ts'
import { DealerSource } from '../../../crypto/mpc/dealer.ts'
import { ringAdd } from '../../../crypto/mpc/ring.ts'
import { MpcSession } from '../../../crypto/mpc/session.ts'
import { ERR_MPC_BAD_MESSAGE } from '../../../crypto/mpc/wire.ts'
import { maxAbsDiff, plainMatmul, runParties } from './helpers.ts'

const F = 16
const ulp = 2 ** -F
const real = fc.double({ min: -100, max: 100, noNaN: true })
const matrices = fc
  .tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }))
  .chain(([m, k, n]) =>
    fc.tuple(
      fc.constant([m, k, n] as const),
      fc.array(real, { minLength: m * k, maxLength: m * k }),
      fc.array(real, { minLength: k * n, maxLength: k * n }),
    ),
  )

describe('additive sharing and reveal', () => {
  it('shares sum to the input; each share alone looks unrelated; reveal to all and to one', async () => {
    const xs = [1.5, -2, 3.25, 0]
    const out = await runParties(['a', 'b', 'c'], async (s, self) => {
      const x = s.share('b', 2, 2, self === 'b' ? xs : undefined)
      return { share: x.share, all: await s.reveal(x), toC: await s.reveal(x, 'c') }
    })
    const sum = out.map((o) => o.share).reduce((p, q) => ringAdd(p, q))
    expect([...sum]).toEqual([...encodeFixed(xs, F)])
    // a non-owner's share is PRG output, not the encoding
    expect([...out[0].share]).not.toEqual([...encodeFixed(xs, F)])
    for (const o of out) expect([...(o.all ?? [])]).toEqual(xs)
    expect(out[0].toC).toBeUndefined()
    expect(out[1].toC).toBeUndefined()
    expect([...(out[2].toC ?? [])]).toEqual(xs)
  })

  it('public constants and local linear operations', async () => {
    const [r] = await runParties(['a', 'b'], async (s, self) => {
      const x = s.share('a', 1, 3, self === 'a' ? [1, 2, 3] : undefined)
      const y = s.share('b', 1, 3, self === 'b' ? [10, 20, 30] : undefined)
      const z = s.addPublic(s.sub(s.add(x, y), s.neg(s.scaleInt(x, 2n))), 0.5)
      return s.reveal(s.add(z, s.constant(1, 3, [100, 0, -100])))
    })
    expect([...(r ?? [])]).toEqual([113.5, 26.5, -60.5])
  })
})

describe('multiplication with dealer triples', () => {
  for (const names of [
    ['a', 'b'],
    ['a', 'b', 'c'],
  ]) {
    it(`matmul and elementwise mul match plaintext within fixed-point error (${names.length} parties)`, async () => {
      await fc.assert(
        fc.asyncProperty(matrices, async ([[m, k, n], a, b]) => {
          const [res] = await runParties(names, async (s, self) => {
            const x = s.share(names[0], m, k, self === names[0] ? a : undefined)
            const y = s.share(names[1], k, n, self === names[1] ? b : undefined)
            const z = await s.matmul(x, y)
            const w = await s.mul(x, x)
            return { z: await s.reveal(z), w: await s.reveal(w) }
          })
          // encoding error 2^-17 per operand (times |other| <= 100, k terms) plus 1-2 ulp truncation
          const bound = k * 2 * 100 * 2 ** -(F + 1) + 2 * ulp
          expect(maxAbsDiff(res.z!, plainMatmul(a, b, m, k, n))).toBeLessThanOrEqual(bound)
          expect(
            maxAbsDiff(
              res.w!,
              a.map((v) => v * v),
            ),
          ).toBeLessThanOrEqual(2 * 100 * 2 ** -(F + 1) + 2 * ulp)
        }),
        { numRuns: 15 },
      )
    })
  }

  it('a matrix product opens everything in one round (plus one for exact truncation)', async () => {
    const rounds = await runParties(['a', 'b'], async (s, self) => {
      const x = s.share('a', 4, 3, self === 'a' ? new Float64Array(12).fill(1) : undefined)
      const y = s.share('b', 3, 2, self === 'b' ? new Float64Array(6).fill(2) : undefined)
      const before = s.rounds
      const z = await s.matmul(x, y)
      const used = s.rounds - before
      expect([...((await s.reveal(z)) ?? [])]).toEqual(new Array(8).fill(6))
      return used
    })
    expect(rounds).toEqual([1, 1])
    const exact = await runParties(
      ['a', 'b'],
      async (s) => {
        const before = s.rounds
        await s.matmul(s.constant(2, 2, [1, 2, 3, 4]), s.constant(2, 2, [1, 0, 0, 1]))
        return s.rounds - before
      },
      { truncation: 'exact' },
    )
    expect(exact).toEqual([2, 2])
  })

  it('exact truncation (n parties) is within 1 ulp over the whole |x| < 2^62 range', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.bigInt({ min: -(2n ** 61n), max: 2n ** 61n }), { minLength: 1, maxLength: 30 }),
        async (xs) => {
          const data = BigUint64Array.from(xs, (v) => BigInt.asUintN(64, v))
          const [r] = await runParties(['a', 'b', 'c'], async (s, self) => {
            const x = s.shareRing('c', 1, xs.length, self === 'c' ? data : undefined)
            return s.revealRing(await s.truncate(x))
          })
          r!.forEach((v, i) => {
            const want = xs[i] >> 16n
            const got = BigInt.asIntN(64, v)
            expect([want, want + 1n]).toContain(got)
          })
        },
      ),
      { numRuns: 20 },
    )
  })

  it('an external dealer sends only the correction share, to one party, for a prepared plan', async () => {
    const plan = [{ kind: 'matmul', m: 2, k: 2, n: 1 } as const]
    const [res] = await runParties(
      ['a', 'b'],
      async (s, self) => {
        await s.source.prepare(plan)
        expect(s.source.stocked()).toBe(1)
        const x = s.share('a', 2, 2, self === 'a' ? [1, 2, 3, 4] : undefined)
        const y = s.share('b', 2, 1, self === 'b' ? [0.5, -1] : undefined)
        const z = await s.reveal(await s.matmul(x, y))
        return { z }
      },
      { dealer: 'd', helpers: ['d'], plan: [...plan] },
    )
    expect([...(res.z ?? [])]).toEqual([-1.5, -2.5])
  })

  it('an unprepared request with an external dealer fails with a clear error instead of hanging', async () => {
    await expect(
      runParties(['a', 'b'], async (s) => s.source.mulTriple(3), { dealer: 'd', helpers: ['d'] }),
    ).rejects.toThrow(/not prepared/)
  })
})

describe('robustness', () => {
  it('rejects a peer message of the wrong length with a stable code', async () => {
    const ch = createMemoryChannels(['a', 'b'])
    const [sa] = await Promise.all(
      ['a', 'b'].map(async (p) => {
        const c = ch.get(p)!
        return MpcSession.create(c, { source: await DealerSource.create(c, { dealer: 'a' }) })
      }),
    )
    const x = sa.constant(1, 4, [1, 2, 3, 4])
    const pending = sa.reveal(x)
    await ch.get('b')!.send('a', 'mpc/o0', new Uint8Array(5))
    await expect(pending).rejects.toThrow(expect.objectContaining({ code: ERR_MPC_BAD_MESSAGE }))
    expect(decodeFixed(x.share, F)[0]).toBe(1)
  })
})
