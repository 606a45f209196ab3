import { randomBytes } from 'node:crypto'
import { requireNonNegative } from './validate.ts'

/**
 * Noise sources for the DP mechanisms, driven by the operating system's CSPRNG (node:crypto), never by
 * Math.random. Floating-point caveat (Mironov, CCS 2012): a textbook float sampler does not produce every
 * real number, and the set of reachable outputs depends on the true value, so the low-order bits of a released
 * float can in principle leak it. The effect is far below the statistical noise for the aggregates Syndicate
 * releases (gradients, counts rounded before release), but the formal guarantee holds for the idealised real
 * mechanism only; see docs/dp.md for the mitigation (round the output to a grid coarser than the float spacing).
 */

const POOL_BYTES = 8192
let pool = new Uint8Array(0)
let at = 0

function next53Bits(): number {
  if (at + 7 > pool.length) {
    pool = new Uint8Array(randomBytes(POOL_BYTES))
    at = 0
  }
  // 53 bits from 7 bytes: 5 high bits from the first byte and 48 from the next six.
  const hi = pool[at] & 0x1f
  let lo = 0
  for (let i = 1; i < 7; i++) lo = lo * 256 + pool[at + i]
  at += 7
  return hi * 2 ** 48 + lo
}

/** Uniform on the open interval (0, 1): (k + 0.5) / 2^53 for a uniform 53-bit k. */
export function uniformOpen01(): number {
  return (next53Bits() + 0.5) / 2 ** 53
}

/** `n` independent N(0, sigma^2) samples (Box-Muller, both outputs of each pair used). */
export function gaussianSamples(n: number, sigma: number): Float64Array {
  requireNonNegative('sigma', sigma)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniformOpen01())) * sigma
    const theta = 2 * Math.PI * uniformOpen01()
    out[i] = r * Math.cos(theta)
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta)
  }
  return out
}

/** `n` independent Laplace(0, b) samples by inversion of the CDF. */
export function laplaceSamples(n: number, b: number): Float64Array {
  requireNonNegative('b', b)
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const u = uniformOpen01() - 0.5 // in (-0.5, 0.5): the log argument below stays positive
    out[i] = -b * Math.sign(u) * Math.log(1 - 2 * Math.abs(u))
  }
  return out
}
