import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { lessThan, ltzRing, relu, sigmoid, sigmoidApprox } from '../../../crypto/mpc/nonlinear.ts'
import type { CorrelationRequest } from '../../../crypto/mpc/source.ts'
import { maxAbsDiff, runParties } from './helpers.ts'

const sig = (x: number) => 1 / (1 + Math.exp(-x))

describe('comparison', () => {
  it('extracts the sign of every ring element exactly, extremes included (2 and 3 parties, both circuits)', async () => {
    const fixed = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 62n, -(2n ** 40n)]
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 40 }),
        fc.boolean(),
        async (rand, three) => {
          const xs = [...fixed, ...rand]
          const data = BigUint64Array.from(xs, (v) => BigInt.asUintN(64, v))
          const names = three ? ['a', 'b', 'c'] : ['a', 'b']
          const [bits] = await runParties(names, async (s, self) => {
            const x = s.shareRing('b', 1, xs.length, self === 'b' ? data : undefined)
            return s.revealRing({ rows: 1, cols: xs.length, share: await ltzRing(s, x.share) })
          })
          expect([...bits!]).toEqual(xs.map((v) => (v < 0n ? 1n : 0n)))
        },
      ),
      { numRuns: 12 },
    )
  })

  it('lessThan and relu on fixed-point values', async () => {
    const xs = [-3.5, -0.0001, 0, 0.25, 7]
    const ys = [1, -1, 0, 0.25, 6.5]
    const [r] = await runParties(['a', 'b'], async (s, self) => {
      const x = s.share('a', 1, 5, self === 'a' ? xs : undefined)
      const y = s.share('b', 1, 5, self === 'b' ? ys : undefined)
      return { lt: await s.reveal(await lessThan(s, x, y)), relu: await s.reveal(await relu(s, x)) }
    })
    expect([...r.lt!]).toEqual([1, 0, 0, 0, 0])
    expect(maxAbsDiff(r.relu!, [0, 0, 0, 0.25, 7])).toBeLessThanOrEqual(2 ** -16)
  })
})

describe('with an external dealer (every correlation prepared, corrections sent to one party)', () => {
  it('3 parties: exact truncation, boolean comparison and sigmoid from a recorded plan', async () => {
    const xs = [-9, -2, -0.5, 0, 0.7, 3, 12]
    const names = ['a', 'b', 'c']
    // learn the plan with a trusted-first-party run, then replay it with an external dealer
    const recorded: CorrelationRequest[] = []
    await runParties(
      names,
      async (s, self) => sigmoid(s, s.share('b', 1, xs.length, self === 'b' ? xs : undefined)),
      { record: recorded },
    )
    expect(recorded.some((r) => r.kind === 'edabit')).toBe(true)
    expect(recorded.some((r) => r.kind === 'trunc')).toBe(true)
    const [y] = await runParties(
      names,
      async (s, self) => {
        await s.source.prepare(recorded)
        const x = s.share('b', 1, xs.length, self === 'b' ? xs : undefined)
        const out = await s.reveal(await sigmoid(s, x))
        expect(s.source.stocked()).toBe(0)
        return out
      },
      { dealer: 'd', helpers: ['d'], plan: recorded },
    )
    expect(maxAbsDiff(y!, xs.map(sig))).toBeLessThanOrEqual(1e-3)
  })
})

describe('sigmoid approximation', () => {
  it('the plaintext approximation (clamp to [-8, 8], Chebyshev degree 21) is within 5e-4 everywhere', () => {
    let worst = 0
    for (let x = -30; x <= 30; x += 0.001) worst = Math.max(worst, Math.abs(sigmoidApprox(x) - sig(x)))
    expect(worst).toBeLessThan(5e-4)
  })

  for (const names of [
    ['a', 'b'],
    ['a', 'b', 'c'],
  ]) {
    it(`secure sigmoid is within 1e-3 of the true sigmoid (${names.length} parties, 16 fractional bits)`, async () => {
      const grid = Array.from({ length: 401 }, (_, i) => -20 + i * 0.1)
      const random = Array.from({ length: 200 }, () => (Math.random() - 0.5) * 200)
      const xs = [...grid, ...random, -1e6, 1e6]
      const [y] = await runParties(names, async (s, self) => {
        const x = s.share('a', 1, xs.length, self === 'a' ? xs : undefined)
        return s.reveal(await sigmoid(s, x))
      })
      expect(maxAbsDiff(y!, xs.map(sig))).toBeLessThanOrEqual(1e-3)
    })
  }
})
