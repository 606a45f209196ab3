/**
 * Slot layout of the homomorphic matrix-triple generator (no rotations needed).
 *
 * An output block is one ciphertext whose slot (g, r, j) accumulates Σ_s A[i0+r][l] · B[l][j0+j] over the
 * steps s of the block, with l = g·S + s: the multiplier adds the slotwise products of S ciphertexts (one per
 * step, encrypting B's rows l for every group g) and S plaintexts (A's columns l), so the mask, the reply and
 * the decryption are paid once per block instead of once per product. The G groups fill the slots when the
 * output is small and balance the encrypted side's ciphertexts (k / G) against the replies (m·n·G / N); the
 * parties add the groups of their shares afterwards. Steps per unit are capped
 * at 2^10, which bounds every accumulated slot by 2^138 (the CRT modulus T is ~2^180).
 */
import { type Ring, ringAdd } from './ring.ts'

/** BFV ring degree: slots per ciphertext. */
export const HE_POLY_DEGREE = 8192
const MAX_STEPS = 1024

export interface MatmulLayout {
  m: number
  k: number
  n: number
  /** Groups of l per ciphertext and steps per group (l = g·S + s). */
  G: number
  S: number
  /** Rows per block and the column ranges (most shapes have one: all of n). */
  rows: number
  cols: { j0: number; w: number }[]
  /** Units of work: a block (first row, column range) and its steps [s0, s1). */
  units: { i0: number; jb: number; s0: number; s1: number }[]
}

export function matmulLayout(m: number, k: number, n: number): MatmulLayout {
  const N = HE_POLY_DEGREE
  const cols: { j0: number; w: number }[] = []
  for (let j0 = 0; j0 < n; j0 += N) cols.push({ j0, w: Math.min(N, n - j0) })
  const w = Math.min(n, N)
  // G groups of l per ciphertext leave rows = N / (G·w) rows per block. The encrypted side sends S = k / G
  // ciphertexts per column range, the reply side one per block: choose G to minimise their sum.
  let best = { G: 1, rows: 1, cost: Number.POSITIVE_INFINITY }
  for (let G = 1; G <= Math.max(1, Math.min(k, Math.floor(N / w))); G++) {
    const rows = Math.max(1, Math.min(m, Math.floor(N / (G * w))))
    const cost = (Math.ceil(k / G) + Math.ceil(m / rows)) * cols.length
    if (cost < best.cost) best = { G, rows, cost }
  }
  const { G, rows } = best
  const S = Math.ceil(k / G)
  const units: MatmulLayout['units'] = []
  if (m > 0 && n > 0 && k > 0) {
    for (let i0 = 0; i0 < m; i0 += rows) {
      for (let jb = 0; jb < cols.length; jb++) {
        for (let s0 = 0; s0 < S; s0 += MAX_STEPS) units.push({ i0, jb, s0, s1: Math.min(S, s0 + MAX_STEPS) })
      }
    }
  }
  return { m, k, n, G, S, rows, cols, units }
}

/** Slots per block. */
export function blockSlots(L: MatmulLayout, jb: number): number {
  return L.G * L.rows * L.cols[jb].w
}

/** Chunk id of step s in column range jb: the encrypted side's ciphertexts are indexed by (s, jb). */
export function chunkId(L: MatmulLayout, s: number, jb: number): number {
  return s * L.cols.length + jb
}

/** The encrypted side's slots for chunk (s, jb): slot (g, r, j) holds B[g·S + s][j0 + j] (0 past k). */
export function encryptedChunk(L: MatmulLayout, b: Ring, s: number, jb: number): Ring {
  const { j0, w } = L.cols[jb]
  const out = new BigUint64Array(blockSlots(L, jb))
  const src = new Uint32Array(b.buffer, b.byteOffset, 2 * b.length)
  const dst = new Uint32Array(out.buffer)
  for (let g = 0; g < L.G; g++) {
    const l = g * L.S + s
    if (l >= L.k) break
    for (let r = 0; r < L.rows; r++) {
      const to = 2 * (g * L.rows * w + r * w)
      dst.set(src.subarray(2 * (l * L.n + j0), 2 * (l * L.n + j0 + w)), to)
    }
  }
  return out
}

/** The plaintext side's slots for step s of a unit: slot (g, r, j) holds A[i0 + r][g·S + s] (0 past m or k). */
export function plainTerm(L: MatmulLayout, a: Ring, i0: number, jb: number, s: number): Ring {
  const { w } = L.cols[jb]
  const out = new BigUint64Array(blockSlots(L, jb))
  const src = new Uint32Array(a.buffer, a.byteOffset, 2 * a.length)
  const dst = new Uint32Array(out.buffer)
  for (let g = 0; g < L.G; g++) {
    const l = g * L.S + s
    if (l >= L.k) break
    for (let r = 0; r < L.rows && i0 + r < L.m; r++) {
      const from = 2 * ((i0 + r) * L.k + l)
      const lo = src[from]
      const hi = src[from + 1]
      let to = 2 * (g * L.rows * w + r * w)
      for (let j = 0; j < w; j++, to += 2) {
        dst[to] = lo
        dst[to + 1] = hi
      }
    }
  }
  return out
}

/** Adds a unit's slot values (summing its groups) into the m×n output share. */
export function foldUnit(L: MatmulLayout, unit: MatmulLayout['units'][number], v: Ring, out: Ring): void {
  const { j0, w } = L.cols[unit.jb]
  const rows = Math.min(L.rows, L.m - unit.i0)
  for (let g = 0; g < L.G; g++) {
    const slots = v.subarray(g * L.rows * w, g * L.rows * w + rows * w)
    if (w === L.n) {
      const at = unit.i0 * L.n
      out.set(ringAdd(out.subarray(at, at + rows * w), slots), at)
    } else {
      const at = unit.i0 * L.n + j0 // rows === 1 here
      out.set(ringAdd(out.subarray(at, at + w), slots), at)
    }
  }
}

/** [from, to) ranges of at most one ciphertext's slots covering n elements (elementwise products). */
export function slotRanges(n: number): [number, number][] {
  const out: [number, number][] = []
  for (let s = 0; s < n; s += HE_POLY_DEGREE) out.push([s, Math.min(n, s + HE_POLY_DEGREE)])
  return out
}
