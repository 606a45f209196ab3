import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeFixed, ERR_FIXED_OVERFLOW, ERR_FIXED_PARAMS, encodeFixed } from '../../../crypto/fixed.ts'

describe('fixed-point encoding in Z(2^64)', () => {
  it('encodes known values as two-s complement scaled integers', () => {
    const r = encodeFixed([1.5, -1, 0, 2 ** -16, -(2 ** -16) * 3, 2 ** -17], 16)
    expect([...r]).toEqual([98304n, 2n ** 64n - 65536n, 0n, 1n, 2n ** 64n - 3n, 1n])
    expect([...decodeFixed(r, 16)]).toEqual([1.5, -1, 0, 2 ** -16, -3 * 2 ** -16, 2 ** -16])
    expect([...encodeFixed(new Float64Array([3.25]), 20)]).toEqual([3n * 2n ** 20n + 2n ** 18n])
  })

  it('round-trips within 2^-(f+1) for every fractional precision 16..20', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 16, max: 20 }),
        fc.array(fc.double({ min: -1e9, max: 1e9, noNaN: true }), { maxLength: 50 }),
        (f, xs) => {
          const back = decodeFixed(encodeFixed(xs, f), f)
          for (let i = 0; i < xs.length; i++)
            expect(Math.abs(back[i] - xs[i])).toBeLessThanOrEqual(2 ** -(f + 1))
        },
      ),
    )
  })

  it('decodes large magnitudes near the signed limit', () => {
    const big = 2 ** 46 - 1
    expect(decodeFixed(encodeFixed([big, -big], 16), 16)).toEqual(new Float64Array([big, -big]))
  })

  it('rejects values that do not fit and bad parameters with stable codes', () => {
    for (const v of [2 ** 47, -(2 ** 47), Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => encodeFixed([v], 16)).toThrow(expect.objectContaining({ code: ERR_FIXED_OVERFLOW }))
    }
    expect(() => encodeFixed([1], 53)).toThrow(expect.objectContaining({ code: ERR_FIXED_PARAMS }))
  })
})
