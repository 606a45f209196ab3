/**
 * Non-linear functions on shares: comparison with zero (sign), ReLU and a sigmoid approximation.
 *
 * Comparison extracts the top bit of x: the parties open c = x + r for a random r whose bits are also shared,
 * and msb(x) = c63 ⊕ r63 ⊕ [c mod 2^63 < r mod 2^63]. It is exact for every ring value (no range condition).
 * Two circuits compute the bitwise comparison of the public c with the shared bits of r:
 *  - boolean (sources that deal boolean correlations, i.e. the dealer): r's bits XOR-shared and packed 64 to a
 *    word, a Kogge–Stone carry chain with 11 AND gates per element in 6 rounds, then one round to convert the
 *    result bit to an arithmetic share with a random bit known in both forms. 8 rounds, ~200 bytes per element.
 *  - arithmetic (any source, including dealer-free): r's bits as 64 arithmetic shares; suffix products of
 *    "bits equal" indicators (Hillis–Steele, 6 rounds) and two more products: 9 rounds, 372 products per element.
 *
 * Sigmoid: clamp x to [-8, 8] (two comparisons, batched), then a degree-21 Chebyshev expansion of
 * sigmoid(8t) in t = x/8, evaluated through the recurrences T2n = 2Tn² - 1, T2n+1 = 2TnTn+1 - T1, which keep
 * every intermediate in [-1, 1] (safe for fixed point) and take 5 rounds. Approximation error (measured on a
 * 0.001 grid): 1.3e-4 inside [-8, 8]; clamping adds at most 1 - sigmoid(8) = 3.4e-4 outside; fixed-point
 * rounding adds about 1e-4 at 16 fractional bits (docs/mpc.md; tests assert <= 1e-3 overall).
 */
import { encodeFixedScalar } from '../fixed.ts'
import {
  type Ring,
  ringAdd,
  ringAnd,
  ringBits,
  ringConcat,
  ringConst,
  ringFromInts,
  ringMul,
  ringScale,
  ringShl,
  ringShr,
  ringSub,
  ringXor,
} from './ring.ts'
import type { MpcSession, SharedMatrix } from './session.ts'

const BITS = 64

/** Shares of the bit [x < 0] (0 or 1 as a ring integer) for ring shares x read as two's complement. */
export function ltzRing(s: MpcSession, x: Ring): Promise<Ring> {
  return s.source.boolean ? ltzBoolean(s, x) : ltzArithmetic(s, x)
}

async function ltzBoolean(s: MpcSession, x: Ring): Promise<Ring> {
  const n = x.length
  const eda = await s.source.edaBits(n)
  const [c] = await s.open([ringAdd(x, eda.arith)])
  const lead = s.index === 0
  const notC = ringXor(c, ringConst(n, -1n))
  // per bit: P = [c_j = r_j] = ~c ⊕ r (public part added once), G = [c_j < r_j] = ~c ∧ r (AND with public: local)
  let P = lead ? ringXor(eda.bool, notC) : eda.bool
  let G = ringAnd(eda.bool, notC)
  // Kogge–Stone: after the level with shift k, bit i summarises bits [i-2k+1, i]; bit 62 ends with [c' < r']
  for (let k = 1; k < BITS - 1; k *= 2) {
    if (2 * k >= BITS - 1) {
      G = ringXor(G, await s.andBool(P, ringShl(G, k)))
    } else {
      const t = await s.andBool(ringConcat(P, P), ringConcat(ringShl(G, k), ringShl(P, k)))
      G = ringXor(G, t.subarray(0, n))
      P = t.subarray(n)
    }
  }
  const one = ringConst(n, 1n)
  let msb = ringAnd(ringXor(ringShr(G, BITS - 2), ringShr(eda.bool, BITS - 1)), one)
  if (lead) msb = ringXor(msb, ringShr(c, BITS - 1))
  // to arithmetic: open z = msb ⊕ b, then msb = z + b - 2zb with b's arithmetic share
  const [z] = await s.openXor([ringXor(msb, eda.bitBool)])
  const arith = ringMul(eda.bitArith, ringSub(one, ringScale(z, 2n)))
  return lead ? ringAdd(arith, z) : arith
}

async function ltzArithmetic(s: MpcSession, x: Ring): Promise<Ring> {
  const n = x.length
  const rb = await s.source.randomBits(BITS * n)
  const bit = (j: number) => rb.subarray(j * n, (j + 1) * n)
  let r: Ring = new BigUint64Array(n)
  for (let j = 0; j < BITS; j++) r = ringAdd(r, ringScale(bit(j), 1n << BigInt(j)))
  const [c] = await s.open([ringAdd(x, r)])
  const lead = s.index === 0
  const pub = ringFromInts
  // e_j = [c_j = r_j] = (1 - c_j) + (2c_j - 1)·r_j ;  d_j = [c_j = 0, r_j = 1] = (1 - c_j)·r_j
  const e: Ring[] = []
  const d: Ring[] = []
  for (let j = 0; j < BITS - 1; j++) {
    const cj = ringBits(c, j)
    const notC = pub(cj.map((b) => 1 - b))
    d.push(ringMul(bit(j), notC))
    if (j > 0) {
      const term = ringMul(bit(j), pub(Int8Array.from(cj, (b) => 2 * b - 1)))
      e.push(lead ? ringAdd(term, notC) : term)
    }
  }
  // v[i] = Π_{j=i+1}^{62} e_j for i = 0..61 (suffix scan over e_1..e_62)
  let v = e
  for (let o = 1; o < v.length; o *= 2) {
    const count = v.length - o
    const prod = await s.mulRing(ringConcat(...v.slice(0, count)), ringConcat(...v.slice(o)))
    v = v.map((old, i) => (i < count ? prod.subarray(i * n, (i + 1) * n) : old))
  }
  // [c' < r'] = d_62 + Σ_{i<62} d_i · v_i
  const terms = await s.mulRing(ringConcat(...d.slice(0, BITS - 2)), ringConcat(...v))
  let lt = d[BITS - 2]
  for (let i = 0; i < BITS - 2; i++) lt = ringAdd(lt, terms.subarray(i * n, (i + 1) * n))
  // msb = u ⊕ lt with u = c63 ⊕ r63 = c63 + (1 - 2c63)·r63
  const c63 = ringBits(c, BITS - 1)
  const u0 = ringMul(bit(BITS - 1), pub(Int8Array.from(c63, (b) => 1 - 2 * b)))
  const u = lead ? ringAdd(u0, pub(c63)) : u0
  const ul = await s.mulRing(u, lt)
  return ringSub(ringAdd(u, lt), ringScale(ul, 2n))
}

/** [x < 0] as a fixed-point matrix (1.0 or 0.0). */
export async function lessThanZero(s: MpcSession, x: SharedMatrix): Promise<SharedMatrix> {
  return { ...x, share: ringScale(await ltzRing(s, x.share), 1n << BigInt(s.fracBits)) }
}

/** [x < y] as a fixed-point matrix. */
export async function lessThan(s: MpcSession, x: SharedMatrix, y: SharedMatrix): Promise<SharedMatrix> {
  return lessThanZero(s, s.sub(x, y))
}

/** max(x, 0): x times the bit [x >= 0]; the product with a 0/1 integer is exact (no truncation). */
export async function relu(s: MpcSession, x: SharedMatrix): Promise<SharedMatrix> {
  const neg = await ltzRing(s, x.share)
  const keep = s.index === 0 ? ringSub(ringConst(neg.length, 1n), neg) : ringScale(neg, -1n)
  return { ...x, share: await s.mulRing(x.share, keep) }
}

export const SIGMOID_BOUND = 8
export const SIGMOID_DEGREE = 21

/** Chebyshev coefficients of t ↦ sigmoid(8t) on [-1, 1] (interpolation at 256 Chebyshev nodes). */
export const SIGMOID_CHEBYSHEV: readonly number[] = (() => {
  const nodes = 256
  const out: number[] = []
  for (let k = 0; k <= SIGMOID_DEGREE; k++) {
    let sum = 0
    for (let j = 0; j < nodes; j++) {
      const th = (Math.PI * (j + 0.5)) / nodes
      sum += Math.cos(k * th) / (1 + Math.exp(-SIGMOID_BOUND * Math.cos(th)))
    }
    out.push(((k === 0 ? 1 : 2) * sum) / nodes)
  }
  return out
})()

/** The plaintext twin of `sigmoid` (same clamp and polynomial), for tests and error measurements. */
export function sigmoidApprox(x: number): number {
  const t = Math.max(-1, Math.min(1, x / SIGMOID_BOUND))
  let [t0, t1] = [1, t]
  let v = SIGMOID_CHEBYSHEV[0] + SIGMOID_CHEBYSHEV[1] * t
  for (let k = 2; k <= SIGMOID_DEGREE; k++) {
    ;[t0, t1] = [t1, 2 * t * t1 - t0]
    v += SIGMOID_CHEBYSHEV[k] * t1
  }
  return v
}

/** Elementwise sigmoid approximation (see the module comment for its error). */
export async function sigmoid(s: MpcSession, x: SharedMatrix): Promise<SharedMatrix> {
  const n = x.share.length
  const f = s.fracBits
  const lead = s.index === 0
  const bound = ringConst(n, encodeFixedScalar(SIGMOID_BOUND, f))
  const upper = lead ? ringSub(bound, x.share) : ringScale(x.share, -1n) // 8 - x
  const lower = lead ? ringAdd(x.share, bound) : x.share // x + 8
  const outside = await ltzRing(s, ringConcat(upper, lower)) // [x > 8], [x < -8]
  // clamp: x + [x > 8]·(8 - x) + [x < -8]·(-8 - x), exact products with bits
  const moved = await s.mulRing(outside, ringConcat(upper, ringScale(lower, -1n)))
  const clamped = ringAdd(x.share, ringAdd(moved.subarray(0, n), moved.subarray(n)))
  const T: Ring[] = [ringConst(n, lead ? encodeFixedScalar(1, f) : 0n), await s.truncateRing(clamped, 3)]
  for (let have = 1; have < SIGMOID_DEGREE; have *= 2) {
    const upto = Math.min(2 * have, SIGMOID_DEGREE)
    const left: Ring[] = []
    const right: Ring[] = []
    for (let m = have + 1; m <= upto; m++) {
      left.push(T[m >> 1])
      right.push(T[(m + 1) >> 1])
    }
    // 2·Ta·Tb in one truncation by f - 1 bits
    const prod = await s.truncateRing(await s.mulRing(ringConcat(...left), ringConcat(...right)), f - 1)
    for (let m = have + 1, i = 0; m <= upto; m++, i++) {
      T.push(ringSub(prod.subarray(i * n, (i + 1) * n), m % 2 === 0 ? T[0] : T[1]))
    }
  }
  let acc: Ring = new BigUint64Array(n)
  for (let k = 1; k <= SIGMOID_DEGREE; k += 2) {
    acc = ringAdd(acc, ringScale(T[k], BigInt.asIntN(64, encodeFixedScalar(SIGMOID_CHEBYSHEV[k], f))))
  }
  const y = await s.truncateRing(acc, f)
  return { ...x, share: lead ? ringAdd(y, ringConst(n, encodeFixedScalar(SIGMOID_CHEBYSHEV[0], f))) : y }
}
