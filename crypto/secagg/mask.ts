/**
 * Masks in Z(2^64): the AES-128-CTR keystream under a 16-byte seed with a zero IV (the PRG construction of
 * crypto/mpc/prg.ts), read as little-endian 64-bit elements. One cipher call expands a whole vector, straight
 * from a KeyObject seed (a raw-bytes key costs node:crypto ~10 µs more per cipher, measured), and the sums run in
 * WebAssembly memory (ringAccumulate in crypto/mpc/ring.ts: every mask of a vector in one pass). (An in-place `acc[i] += v[i]` loop over BigUint64Array runs
 * 4x faster when TurboFan compiles it, but once V8's Maglev tier inlines it into a caller it allocates a BigInt
 * per element and the whole aggregation got 3x slower after a few runs in one process: not dependable.)
 */
import { createCipheriv, type KeyObject } from 'node:crypto'
import type { RingVector } from '../fixed.ts'
import { ringAccumulate } from '../mpc/ring.ts'

const IV = new Uint8Array(16)
// Plaintext of the keystream, kept at the longest vector seen so far; only ever read.
let zeros = new Uint8Array(0)

function keystream(seed: KeyObject, length: number, iv: Uint8Array): RingVector {
  if (zeros.length < 8 * length) zeros = new Uint8Array(8 * length)
  return ringView(createCipheriv('aes-128-ctr', seed, iv).update(zeros.subarray(0, 8 * length)))
}

/** A mask to add (or, with `sub`, subtract): PRG(seed) from counter block `iv` (default zero). */
export interface Mask {
  seed: KeyObject
  iv?: Uint8Array
  sub?: boolean
}

/**
 * v ± every mask mod 2^64 in one pass (ringAccumulate), each keystream made only when it is added; written
 * into `out` when given (e.g. the vector's place in the message to send).
 */
export function applyMasks(v: RingVector, masks: readonly Mask[], out?: RingVector): RingVector {
  return ringAccumulate(
    v,
    (function* () {
      for (const m of masks) yield { x: keystream(m.seed, v.length, m.iv ?? IV), sub: m.sub }
    })(),
    out,
  )
}

/**
 * The bytes as Z(2^64) elements: a view when 8-byte aligned (no copy), a copy otherwise (small outputs of
 * node:crypto come from a shared pool at any offset; a received message may sit anywhere in a frame).
 */
export function ringView(b: Uint8Array): RingVector {
  const n = b.byteLength >>> 3
  return b.byteOffset % 8 === 0
    ? new BigUint64Array(b.buffer, b.byteOffset, n)
    : new BigUint64Array(b.slice(0, 8 * n).buffer)
}
