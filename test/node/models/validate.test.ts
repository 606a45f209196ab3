import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { csvCell, FLOAT32_MAX, rowValidator } from '../../../node/services/models/validate.ts'

const features = ['a', 'b', 'c']
const cell = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, 1e39, -FLOAT32_MAX, FLOAT32_MAX, 0),
  fc.constant(null),
  fc.string({ maxLength: 3 }),
  fc.boolean(),
  fc.constant(undefined),
)
const row = fc.oneof(
  { weight: 5, arbitrary: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'x'), cell, { maxKeys: 4 }) },
  {
    weight: 5,
    arbitrary: fc.record({
      a: fc.double({ noNaN: true, noDefaultInfinity: true }),
      b: fc.integer(),
      c: cell,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(fc.constant(null), fc.integer(), fc.array(fc.integer(), { maxLength: 3 })),
  },
)

describe('row validation: the fast path accepts exactly what the zod schema accepts', () => {
  for (const allowMissing of [false, true]) {
    it(`allowMissing=${allowMissing}`, () => {
      const v = rowValidator(features, allowMissing)
      fc.assert(
        fc.property(fc.array(row, { minLength: 1, maxLength: 4 }), (rows) => {
          // JSON round trip: what a request body can actually hold (drops undefined, NaN → null).
          const json = JSON.parse(JSON.stringify(rows)) as unknown[]
          for (const rs of [rows, json]) {
            const out = new Float32Array(rs.length * features.length)
            const ok = v.fill(rs, out)
            expect(ok).toBe(v.problems(rs).length === 0)
            if (ok) {
              rs.forEach((r, i) => {
                features.forEach((f, j) => {
                  const x = (r as Record<string, number | null>)[f]
                  expect(out[i * 3 + j]).toBe(x === null ? Number.NaN : Math.fround(x))
                })
              })
            }
          }
        }),
        { numRuns: 400 },
      )
    })
  }

  it('lists each problem with its row and field', () => {
    const v = rowValidator(features, false)
    const problems = v.problems([
      { a: 1, b: 2, c: 3 },
      { a: 'x', c: Infinity, d: 1 },
      7,
      { a: null, b: 1e39, c: 0 },
    ])
    expect(problems).toEqual(
      expect.arrayContaining([
        { row: 1, field: 'a', problem: 'wrong type: expected a number, got the string "x"' },
        { row: 1, field: 'b', problem: 'missing field (expected a number)' },
        { row: 1, field: 'c', problem: 'not a finite number (Infinity)' },
        { row: 1, field: 'd', problem: 'unknown field (not a feature of this model)' },
        { row: 2, field: null, problem: 'expected an object of feature values, got number' },
        { row: 3, field: 'a', problem: 'wrong type: expected a number, got null' },
        { row: 3, field: 'b', problem: 'outside the float32 range' },
      ]),
    )
    expect(problems).toHaveLength(7)
  })

  it('reads a CSV cell as a number exactly when it is a decimal literal', () => {
    const decimal = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9.eE+-]{0,8}$/), (s) => {
        const v = csvCell(s)
        if (decimal.test(s)) expect(v).toBe(Number(s))
        else expect(typeof v === 'number').toBe(false)
      }),
      { numRuns: 2000 },
    )
  })

  it('reads CSV cells: empty = missing, numbers, non-finite spellings, text kept for a type error', () => {
    expect([' ', '1.5', '-2e3', '.5', 'NaN', '-inf', 'Infinity', 'abc', '0x10'].map(csvCell)).toEqual([
      null,
      1.5,
      -2000,
      0.5,
      Number.NaN,
      -Infinity,
      Infinity,
      'abc',
      '0x10',
    ])
  })
})
