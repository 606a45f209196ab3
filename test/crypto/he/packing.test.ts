import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HeEvaluator, HeKeyOwner } from '../../../crypto/he/index.ts'
import { centre, zeroSumMask } from '../../../crypto/he/mask.ts'
import { packGh, planGhPacking, unpackGhSum } from '../../../crypto/he/packing.ts'

describe('zero-sum masks', () => {
  it('sum to 0 mod t and stay in the centred range (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom(97n, 65537n, 1152921504606830593n),
        (n, t) => {
          const m = zeroSumMask(n, t)
          expect(
            centre(
              m.reduce((s, v) => s + v, 0n),
              t,
            ),
          ).toBe(0n)
          for (const v of m) expect(v <= t / 2n && v >= -(t / 2n)).toBe(true)
        },
      ),
    )
  })

  it('is refused for CKKS', async () => {
    const owner = await HeKeyOwner.generate('ckks-4096', { relin: false })
    const v = owner.encrypt([1])
    expect(() => owner.evaluator.addZeroSumMask(v)).toThrow(
      expect.objectContaining({ code: 'ERR_HE_SCHEME_MISMATCH' }),
    )
    v.free()
    owner.free()
  })
})

describe('GH packing for SecureBoost', () => {
  const plan = planGhPacking({ preset: 'bfv-8192', maxCount: 30_000, gMax: 1, hMax: 0.25 })

  it('plans the most fraction bits that fit the plaintext modulus', () => {
    // 30,000 * 0.25 * 2^15 < 2^28 for h, 30,000 * 2^15 < 2^30 for |g|: 58 bits = 60-bit t minus sign and margin.
    expect(plan).toMatchObject({ fracBits: 15, hBits: 28 })
    expect(() =>
      planGhPacking({ preset: 'bfv-8192', maxCount: 30_000, gMax: 1, hMax: 0.25, fracBits: 16 }),
    ).toThrow(expect.objectContaining({ code: 'ERR_HE_PACKING' }))
    expect(() => planGhPacking({ preset: 'ckks-8192', maxCount: 10, gMax: 1, hMax: 1 })).toThrow(
      expect.objectContaining({ code: 'ERR_HE_PACKING' }),
    )
  })

  it('recovers any subset sum of (g, h) from the packed sum (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.double({ min: -1, max: 1, noNaN: true }),
            fc.double({ min: 0, max: 0.25, noNaN: true }),
          ),
          {
            minLength: 1,
            maxLength: 200,
          },
        ),
        (rows) => {
          const packed = packGh(
            rows.map((r) => r[0]),
            rows.map((r) => r[1]),
            plan,
          )
          const total = packed.reduce((s, v) => s + v, 0n)
          const got = unpackGhSum(total, plan)
          const tol = rows.length * 2 ** -(plan.fracBits + 1) + 1e-12
          expect(Math.abs(got.g - rows.reduce((s, r) => s + r[0], 0))).toBeLessThanOrEqual(tol)
          expect(Math.abs(got.h - rows.reduce((s, r) => s + r[1], 0))).toBeLessThanOrEqual(tol)
        },
      ),
    )
  })

  it('refuses values outside the plan', () => {
    expect(() => packGh([1.5], [0.1], plan)).toThrow(expect.objectContaining({ code: 'ERR_HE_PACKING' }))
    expect(() => packGh([0.5], [-0.1], plan)).toThrow(expect.objectContaining({ code: 'ERR_HE_PACKING' }))
    expect(() => packGh([0.5], [], plan)).toThrow(expect.objectContaining({ code: 'ERR_HE_PACKING' }))
  })

  it('gives a feature holder encrypted per-bin (sum g, sum h) with one ciphertext per bin', async () => {
    const labelHolder = await HeKeyOwner.generate('bfv-8192', { sumSlots: true, relin: false })
    const featureHolder = await HeEvaluator.fromBundle(labelHolder.publicBundle())
    const n = 9000 // two ciphertexts
    const g = Array.from({ length: n }, (_, i) => Math.sin(i * 1.3))
    const h = g.map((x) => 0.25 * (1 - x * x))
    const bins = Array.from({ length: n }, (_, i) => Math.floor(Math.abs(Math.cos(i)) * 4)) // the holder's feature
    const enc = featureHolder.deserialize(labelHolder.encryptToBytes(packGh(g, h, plan)))
    for (let b = 0; b < 4; b++) {
      const mask = bins.map((v) => (v === b ? 1 : 0))
      const inBin = featureHolder.multiplyPlain(enc, mask)
      const sum = featureHolder.sumSlots(inBin)
      const wire = featureHolder.serialize(sum) // back to the label holder
      // The rotation-free alternative: a zero-sum mask hides every slot, the label holder sums after decrypting.
      const masked = featureHolder.addZeroSumMask(inBin)
      const maskedWire = featureHolder.serialize(masked)
      inBin.free()
      sum.free()
      masked.free()
      const got = labelHolder.evaluator.deserialize(wire)
      const total = labelHolder.decryptIntegers(got)[0]
      const { g: sg, h: sh } = unpackGhSum(total, plan)
      got.free()
      const gotMasked = labelHolder.evaluator.deserialize(maskedWire)
      expect(labelHolder.decryptSum(gotMasked)).toBe(total)
      // What the label holder sees slot by slot is uniform mod t: about half the slots exceed t/4 in magnitude
      // (a packed (g, h) value never does).
      const t = labelHolder.evaluator.plainModulus
      expect(gotMasked.length).toBe(2 * 8192) // every slot of both ciphertexts is masked, padding included
      const big = labelHolder.decryptIntegers(gotMasked).filter((v) => (v < 0n ? -v : v) > t / 4n).length
      expect(big / gotMasked.length).toBeGreaterThan(0.45)
      expect(big / gotMasked.length).toBeLessThan(0.55)
      gotMasked.free()
      let wantG = 0
      let wantH = 0
      bins.forEach((v, i) => {
        if (v === b) {
          wantG += g[i]
          wantH += h[i]
        }
      })
      const tol = n * 2 ** -(plan.fracBits + 1)
      expect(Math.abs(sg - wantG)).toBeLessThan(tol)
      expect(Math.abs(sh - wantH)).toBeLessThan(tol)
    }
    enc.free()
    featureHolder.free()
    labelHolder.free()
  })
})
