import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openEnvelope, sealEnvelope } from '../../../crypto/he/envelope.ts'
import { HeEvaluator, HeKeyOwner, type HeVector } from '../../../crypto/he/index.ts'
import { slotCount, sumSlotsSteps } from '../../../crypto/he/params.ts'
import { loadSeal } from '../../../crypto/he/seal.ts'

// Deterministic pseudo-random test data (the values, not the crypto, need to be reproducible).
function lcg(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32 - 0.5
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

async function codeOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f()
  } catch (e) {
    return (e as { code?: string }).code ?? `not a SyndicateError: ${String(e)}`
  }
  return undefined
}

describe('CKKS wrapper (ckks-4096)', () => {
  let owner: HeKeyOwner
  let passive: HeEvaluator // built only from the public bundle: no secret key in it
  const slots = slotCount('ckks-4096')
  const rnd = lcg(7)
  const n = 2 * slots + 123 // three ciphertexts
  const r = Float64Array.from({ length: n }, () => rnd())

  beforeAll(async () => {
    owner = await HeKeyOwner.generate('ckks-4096', { sumSlots: true, rotations: [5, -2] })
    passive = await HeEvaluator.fromBundle(owner.publicBundle().slice())
  })
  afterAll(() => {
    passive.free()
    owner.free()
  })

  it('round-trips a vector longer than one ciphertext', () => {
    const v = owner.encrypt(r)
    expect(v.ciphertexts.length).toBe(3)
    const d = owner.decrypt(v)
    expect(d.length).toBe(n)
    expect(maxAbsDiff(d, r)).toBeLessThan(1e-5)
    v.free()
  })

  it('lets a public-key-only party compute X^T [[r]] (HE logistic-regression gradient)', () => {
    const d = 3
    const X = Array.from({ length: d }, () => Float64Array.from({ length: n }, () => rnd() * 2))
    const wire = owner.encryptToBytes(r) // active party -> passive party
    const er = passive.deserialize(wire)
    const grads: Uint8Array[] = []
    for (const col of X) {
      const prod = passive.multiplyPlain(er, col)
      const s = passive.sumSlots(prod)
      grads.push(passive.serialize(s)) // passive party -> active party
      prod.free()
      s.free()
    }
    er.free()
    grads.forEach((bytes, j) => {
      let want = 0
      for (let i = 0; i < n; i++) want += X[j][i] * r[i]
      const v = owner.evaluator.deserialize(bytes)
      const got = owner.decrypt(v)[0]
      v.free()
      expect(Math.abs(got - want)).toBeLessThan(2e-3)
    })
  })

  it('adds many ciphertexts, adds and multiplies plaintexts, multiplies ciphertexts', () => {
    const parts = [0, 1, 2, 3].map((k) => passive.encrypt(r.map((x) => x * k)))
    const total = passive.sum(parts)
    expect(
      maxAbsDiff(
        owner.decrypt(total),
        r.map((x) => x * 6),
      ),
    ).toBeLessThan(1e-4)

    const shifted = passive.addPlain(parts[1], r)
    expect(
      maxAbsDiff(
        owner.decrypt(shifted),
        r.map((x) => 2 * x),
      ),
    ).toBeLessThan(1e-4)

    const scaled = passive.multiplyPlain(parts[1], 0.5)
    expect(
      maxAbsDiff(
        owner.decrypt(scaled),
        r.map((x) => x / 2),
      ),
    ).toBeLessThan(1e-4)

    const sq = passive.multiply(parts[1], parts[2])
    expect(
      maxAbsDiff(
        owner.decrypt(sq),
        r.map((x) => 2 * x * x),
      ),
    ).toBeLessThan(1e-4)

    // Operands at different levels are aligned automatically.
    const mixed = passive.add(sq, parts[1])
    expect(
      maxAbsDiff(
        owner.decrypt(mixed),
        r.map((x) => 2 * x * x + x),
      ),
    ).toBeLessThan(1e-4)

    // a - a is a transparent ciphertext in SEAL; the wrapper returns a fresh encryption of zero instead.
    const zero = passive.sub(parts[1], parts[1])
    expect(maxAbsDiff(owner.decrypt(zero), new Float64Array(n))).toBeLessThan(1e-5)
    const zeroProd = passive.multiplyPlain(parts[1], new Float64Array(n))
    expect(maxAbsDiff(owner.decrypt(zeroProd), new Float64Array(n))).toBeLessThan(1e-5)

    for (const v of [...parts, total, shifted, scaled, sq, mixed, zero, zeroProd]) v.free()
  })

  it('refuses a multiplication past the last level', async () => {
    const a = owner.encrypt(r.subarray(0, 10))
    const sq = passive.multiply(a, a)
    expect(await codeOf(() => passive.multiplyPlain(sq, 2))).toBe('ERR_HE_DEPTH_EXHAUSTED')
    a.free()
    sq.free()
  })

  it('rotates with exactly the Galois keys that were asked for', async () => {
    expect(passive.galoisSteps).toEqual(expect.arrayContaining([5, -2, ...sumSlotsSteps('ckks-4096')]))
    const x = Float64Array.from({ length: slots }, (_, i) => i / slots)
    const v = owner.encrypt(x)
    const left = owner.decrypt(passive.rotate(v, 5))
    const right = owner.decrypt(passive.rotate(v, -2))
    for (const i of [0, 100, slots - 6, slots - 1]) {
      // Key switching adds noise: ~3e-5 at N=4096 (the bench reports it per preset).
      expect(Math.abs(left[i] - x[(i + 5) % slots])).toBeLessThan(2e-4)
      expect(Math.abs(right[i] - x[(i - 2 + slots) % slots])).toBeLessThan(2e-4)
    }
    expect(await codeOf(() => passive.rotate(v, 3))).toBe('ERR_HE_MISSING_GALOIS_KEY')
    v.free()
  })

  it('serialises compressed; the secret-key owner sends seeded ciphertexts of about half the size', () => {
    const v = owner.encrypt(r)
    const full = passive.serialize(v)
    const seeded = owner.encryptToBytes(r)
    expect(seeded.length).toBeLessThan(full.length * 0.6)
    const back = passive.deserialize(full)
    expect(maxAbsDiff(owner.decrypt(back), r)).toBeLessThan(1e-5)
    v.free()
    back.free()
  })
})

describe('HE envelope and key checks', () => {
  let a: HeKeyOwner
  let b: HeKeyOwner
  let bfv: HeKeyOwner
  let wire: Uint8Array

  beforeAll(async () => {
    a = await HeKeyOwner.generate('ckks-4096', { relin: false })
    b = await HeKeyOwner.generate('ckks-4096', { relin: false })
    bfv = await HeKeyOwner.generate('bfv-4096', { relin: false })
    wire = a.encryptToBytes([1, 2, 3])
  })
  afterAll(() => {
    for (const o of [a, b, bfv]) o.free()
  })

  it('detects a ciphertext under another key (decryption would silently give noise)', async () => {
    expect(a.keyId).not.toBe(b.keyId)
    expect(await codeOf(() => b.evaluator.deserialize(wire))).toBe('ERR_HE_KEY_MISMATCH')
    const v = a.evaluator.deserialize(wire)
    expect(await codeOf(() => b.decrypt(v))).toBe('ERR_HE_KEY_MISMATCH')
    expect(await codeOf(() => b.evaluator.add(v, v))).toBe('ERR_HE_KEY_MISMATCH')
    v.free()
  })

  it('detects mismatched parameters', async () => {
    expect(await codeOf(() => bfv.evaluator.deserialize(wire))).toBe('ERR_HE_PARAMS_MISMATCH')
  })

  it('rejects corrupted, truncated and foreign bytes without crashing', async () => {
    const flipped = wire.slice()
    flipped[200] ^= 1
    expect(await codeOf(() => a.evaluator.deserialize(flipped))).toBe('ERR_HE_MALFORMED')
    expect(await codeOf(() => a.evaluator.deserialize(wire.subarray(0, wire.length - 1)))).toBe(
      'ERR_HE_MALFORMED',
    )
    expect(await codeOf(() => a.evaluator.deserialize(new Uint8Array(100)))).toBe('ERR_HE_MALFORMED')
    expect(await codeOf(() => HeEvaluator.fromBundle(wire))).toBe('ERR_HE_MALFORMED')
    // A well-formed envelope (valid digest, right key) around garbage: SEAL's parser must refuse it.
    const env = openEnvelope(wire, 2)
    const junk = sealEnvelope({ ...env, parts: [new Uint8Array(env.parts[0].length).fill(7)] })
    expect(await codeOf(() => a.evaluator.deserialize(junk))).toBe('ERR_HE_MALFORMED')
    // A vector that would decode to more than the receiver allows.
    expect(await codeOf(() => a.evaluator.deserialize(wire, 1000))).toBe('ERR_HE_TOO_LARGE')
    // A chunk count that does not match the stated length.
    const lying = sealEnvelope({ ...env, meta: { ...env.meta, length: 1_000_000 } })
    expect(await codeOf(() => a.evaluator.deserialize(lying))).toBe('ERR_HE_MALFORMED')
  })

  it('rejects a transparent ciphertext (one that would reveal its plaintext)', async () => {
    const { seal } = await loadSeal()
    const v = a.encrypt([42])
    const raw = v.ciphertexts[0].saveToArray(seal.ComprModeType.none) as Uint8Array
    // Uncompressed layout ends with the coefficients of c0 then c1; zeroing c1 leaves c0 = m + noise in clear.
    const c1Bytes = v.ciphertexts[0].polyModulusDegree() * v.ciphertexts[0].coeffModulusSize() * 8
    raw.fill(0, raw.length - c1Bytes)
    const forged = a.evaluator.envelope([raw], 1)
    expect(await codeOf(() => a.evaluator.deserialize(forged))).toBe('ERR_HE_MALFORMED')
    v.free()
  })

  it('refuses a tampered or unknown-preset bundle', async () => {
    const env = openEnvelope(a.publicBundle(), 1)
    const unknown = sealEnvelope({ ...env, meta: { ...env.meta, preset: 'ckks-1024' } })
    expect(await codeOf(() => HeEvaluator.fromBundle(unknown))).toBe('ERR_HE_UNKNOWN_PRESET')
    const swapped = sealEnvelope({ ...env, parts: openEnvelope(b.publicBundle(), 1).parts })
    expect(await codeOf(() => HeEvaluator.fromBundle(swapped))).toBe('ERR_HE_MALFORMED')
    const bfvAsCkks = sealEnvelope({ ...openEnvelope(bfv.publicBundle(), 1), meta: env.meta })
    expect(await codeOf(() => HeEvaluator.fromBundle(bfvAsCkks))).toBe('ERR_HE_PARAMS_MISMATCH')
  })

  it('restores a key owner from its bundle and exported secret key, and refuses a foreign secret key', async () => {
    const secret = a.exportSecretKey()
    const restored = await HeKeyOwner.restore(a.publicBundle(), secret)
    expect(restored.keyId).toBe(a.keyId)
    const v = restored.evaluator.deserialize(wire)
    expect(Array.from(restored.decrypt(v)).map((x) => Math.round(x))).toEqual([1, 2, 3])
    v.free()
    restored.free()
    // Another owner's secret key: refused by its fingerprint...
    expect(await codeOf(() => HeKeyOwner.restore(a.publicBundle(), b.exportSecretKey()))).toBe(
      'ERR_HE_KEY_MISMATCH',
    )
    // ...and, relabelled with this bundle's fingerprint, by the decryption round trip.
    const relabelled = sealEnvelope({
      ...openEnvelope(b.exportSecretKey(), 3),
      keyId: openEnvelope(secret, 3).keyId,
    })
    expect(await codeOf(() => HeKeyOwner.restore(a.publicBundle(), relabelled))).toBe('ERR_HE_KEY_MISMATCH')
    expect(await codeOf(() => HeKeyOwner.restore(a.publicBundle(), wire))).toBe('ERR_HE_MALFORMED')
  })

  it('needs relinearisation keys for ciphertext products and refuses bad inputs', async () => {
    const v = a.encrypt([1, 2])
    expect(await codeOf(() => a.evaluator.multiply(v, v))).toBe('ERR_HE_MISSING_RELIN_KEYS')
    expect(await codeOf(() => a.evaluator.addPlain(v, [1, 2, 3]))).toBe('ERR_HE_LENGTH_MISMATCH')
    expect(await codeOf(() => a.encrypt([Number.NaN]))).toBe('ERR_HE_BAD_INPUT')
    expect(await codeOf(() => bfv.encrypt([0.5]))).toBe('ERR_HE_BAD_INPUT')
    expect(await codeOf(() => bfv.encrypt([2n ** 40n]))).toBe('ERR_HE_BAD_INPUT')
    expect(await codeOf(() => bfv.decrypt(bfv.encrypt([1])))).toBe('ERR_HE_SCHEME_MISMATCH')
    v.free()
    expect(await codeOf(() => a.decrypt(v))).toBe('ERR_HE_FREED')
  })
})

describe('BFV wrapper (bfv-4096)', () => {
  it('adds, multiplies and sums slots exactly, with a noise budget', async () => {
    const owner = await HeKeyOwner.generate('bfv-4096', { sumSlots: true })
    const ev = await HeEvaluator.fromBundle(owner.publicBundle())
    const n = 5000 // two ciphertexts of 4096 slots
    const x = Array.from({ length: n }, (_, i) => (i % 7) - 3)
    const y = Array.from({ length: n }, (_, i) => (i % 5) - 2)
    const ex = ev.encrypt(x)
    const ey = ev.encrypt(y)
    const vectors: HeVector[] = [ex, ey]
    const keep = (v: HeVector) => {
      vectors.push(v)
      return v
    }
    expect(Array.from(owner.decryptIntegers(keep(ev.add(ex, ey))))).toEqual(x.map((v, i) => BigInt(v + y[i])))
    expect(Array.from(owner.decryptIntegers(keep(ev.multiplyPlain(ex, y))))).toEqual(
      x.map((v, i) => BigInt(v * y[i])),
    )
    const prod = keep(ev.multiply(ex, ey))
    expect(owner.noiseBudget(prod)).toBeGreaterThan(0)
    expect(Array.from(owner.decryptIntegers(prod))).toEqual(x.map((v, i) => BigInt(v * y[i])))
    const total = keep(ev.sumSlots(prod))
    expect(owner.decryptIntegers(total)[0]).toBe(BigInt(x.reduce((s, v, i) => s + v * y[i], 0)))
    const rot = owner.decryptIntegers(keep(ev.rotate(ex, 1)))
    expect(rot[0]).toBe(BigInt(x[1]))
    // BFV rotates two rows of slots/2 separately.
    expect(rot[2047]).toBe(BigInt(x[0]))
    const swapped = owner.decryptIntegers(keep(ev.swapRows(ex)))
    expect(swapped[0]).toBe(BigInt(x[2048]))
    for (const v of vectors) v.free()
    ev.free()
    owner.free()
  })
})

describe('WebAssembly memory', () => {
  it('does not grow over 10,000 operations (the wrapper frees what it creates)', async () => {
    const owner = await HeKeyOwner.generate('ckks-4096', { rotations: [1] })
    const ev = owner.evaluator
    const x = Float64Array.from({ length: 100 }, (_, i) => i / 100)
    const a = ev.encrypt(x)
    const b = ev.encrypt(x)
    let ops = 0
    const round = (i: number) => {
      // 10 operations per round, covering every evaluator path and the envelope
      for (let k = 0; k < 5; k++) ev.add(a, b).free()
      ev.sub(a, b).free()
      ev.sum([a, b, a]).free()
      if (i % 4 === 0) ev.multiplyPlain(a, x).free()
      else ev.addPlain(a, x).free()
      if (i % 10 === 0) {
        ev.deserialize(ev.serialize(a)).free()
        owner.decrypt(a)
      } else if (i % 10 === 1) {
        ev.multiply(a, b).free()
        ev.rotate(a, 1).free()
      } else {
        ev.add(a, a).free()
        ev.add(b, b).free()
      }
      ops += 10
    }
    for (let i = 0; i < 100; i++) round(i) // warm SEAL's memory pools
    const before = ev.heapBytes()
    ops = 0
    for (let i = 0; i < 1000; i++) round(i)
    expect(ops).toBe(10_000)
    expect(ev.heapBytes()).toBe(before)
    a.free()
    b.free()
    owner.free()
  })
})
