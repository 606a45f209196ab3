import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import {
  bytesToField,
  ERR_SHAMIR,
  fieldToBytes,
  randomFieldElement,
  SHAMIR_PRIME,
  shamirCombine,
  shamirSplit,
} from '../../crypto/shamir.ts'

describe('Shamir sharing over GF(2^255 - 19)', () => {
  it('interpolates a known polynomial (f(x) = 5 + 3x) at zero', () => {
    expect(
      shamirCombine([
        { x: 1, y: 8n },
        { x: 2, y: 11n },
      ]),
    ).toBe(5n)
    expect(
      shamirCombine([
        { x: 4, y: 17n },
        { x: 9, y: 32n },
        { x: 2, y: 11n },
      ]),
    ).toBe(5n)
  })

  it('any t of n shares reconstruct; t-1 shares give something else', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: SHAMIR_PRIME - 1n }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 7 }),
        (secret, t, extra) => {
          const n = t + extra
          const shares = shamirSplit(
            secret,
            t,
            Array.from({ length: n }, (_, i) => 3 * i + 1),
          )
          const pick = [...shares].sort(() => Math.random() - 0.5).slice(0, t)
          expect(shamirCombine(pick)).toBe(secret)
          if (t > 1) expect(shamirCombine(pick.slice(1))).not.toBe(secret)
        },
      ),
      { numRuns: 60 },
    )
  })

  it('t-1 shares are uniformly distributed whatever the secret (single share, t = 2)', () => {
    // With t = 2 a single share is secret + a·x for uniform a: its top bit is a fair coin for either secret.
    for (const secret of [0n, SHAMIR_PRIME - 1n]) {
      let ones = 0
      for (let i = 0; i < 2000; i++) if (shamirSplit(secret, 2, [1, 2])[0].y >= SHAMIR_PRIME / 2n) ones++
      expect(ones).toBeGreaterThan(850)
      expect(ones).toBeLessThan(1150)
    }
  })

  it('round-trips field elements through 32 bytes and rejects bad parameters', () => {
    const v = randomFieldElement()
    expect(bytesToField(fieldToBytes(v))).toBe(v)
    const bad = [
      () => shamirSplit(1n, 0, [1, 2]),
      () => shamirSplit(1n, 3, [1, 2]),
      () => shamirSplit(SHAMIR_PRIME, 1, [1]),
      () => shamirSplit(1n, 1, [1, 1]),
      () => shamirSplit(1n, 1, [0]),
      () => shamirCombine([]),
    ]
    for (const f of bad) {
      try {
        f()
        expect.unreachable()
      } catch (e) {
        expect(isSyndicateError(e, ERR_SHAMIR)).toBe(true)
      }
    }
  })
})
