import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ringAdd,
  ringBits,
  ringFromInts,
  ringMatmul,
  ringMul,
  ringNegSarNeg,
  ringSar,
  ringScale,
  ringShr,
  ringSub,
  ringTranspose,
} from '../../../crypto/mpc/ring.ts'

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
const vecPair = fc
  .integer({ min: 0, max: 40 })
  .chain((n) =>
    fc.tuple(fc.array(u64, { minLength: n, maxLength: n }), fc.array(u64, { minLength: n, maxLength: n })),
  )
const wrap = (v: bigint) => BigInt.asUintN(64, v)

describe('Z(2^64) kernels (WebAssembly) against BigInt', () => {
  it('add, sub, mul, scale wrap mod 2^64', () => {
    fc.assert(
      fc.property(vecPair, u64, ([a, b], s) => {
        const A = BigUint64Array.from(a)
        const B = BigUint64Array.from(b)
        expect([...ringAdd(A, B)]).toEqual(a.map((x, i) => wrap(x + b[i])))
        expect([...ringSub(A, B)]).toEqual(a.map((x, i) => wrap(x - b[i])))
        expect([...ringMul(A, B)]).toEqual(a.map((x, i) => wrap(x * b[i])))
        expect([...ringScale(A, s)]).toEqual(a.map((x) => wrap(x * s)))
      }),
    )
  })

  it('shifts: arithmetic, logical and the SecureML negated form', () => {
    fc.assert(
      fc.property(fc.array(u64, { maxLength: 30 }), fc.integer({ min: 0, max: 63 }), (a, f) => {
        const A = BigUint64Array.from(a)
        const sf = BigInt(f)
        expect([...ringSar(A, f)]).toEqual(a.map((x) => wrap(BigInt.asIntN(64, x) >> sf)))
        expect([...ringShr(A, f)]).toEqual(a.map((x) => x >> sf))
        expect([...ringNegSarNeg(A, f)]).toEqual(a.map((x) => wrap(-(BigInt.asIntN(64, wrap(-x)) >> sf))))
      }),
    )
  })

  it('matmul and transpose', () => {
    fc.assert(
      fc.property(
        fc.tuple(
          fc.integer({ min: 1, max: 7 }),
          fc.integer({ min: 0, max: 7 }),
          fc.integer({ min: 1, max: 7 }),
        ),
        fc.infiniteStream(u64),
        ([m, k, n], stream) => {
          const it = stream[Symbol.iterator]()
          const A = BigUint64Array.from({ length: m * k }, () => it.next().value as bigint)
          const B = BigUint64Array.from({ length: k * n }, () => it.next().value as bigint)
          const C = ringMatmul(A, B, m, k, n)
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              let s = 0n
              for (let l = 0; l < k; l++) s += A[i * k + l] * B[l * n + j]
              expect(C[i * n + j]).toBe(wrap(s))
            }
          }
          const T = ringTranspose(A, m, k)
          for (let i = 0; i < m; i++) for (let l = 0; l < k; l++) expect(T[l * m + i]).toBe(A[i * k + l])
        },
      ),
    )
  })

  it('bits and small integers', () => {
    const r = ringFromInts([0, 1, -1, 5])
    expect([...r]).toEqual([0n, 1n, 2n ** 64n - 1n, 5n])
    expect([...ringBits(r, 0)]).toEqual([0, 1, 1, 1])
    expect([...ringBits(r, 63)]).toEqual([0, 0, 1, 0])
    expect([...ringBits(r, 2)]).toEqual([0, 0, 1, 1])
  })
})
