/**
 * Seeded, reproducible pseudo-random numbers for data splits, shuffles and weight initialisation.
 * sfc32 seeded through splitmix32: fast and statistically fine for learning. NOT for cryptography: keys,
 * masks and noise for privacy come from crypto/, never from here.
 */
import { sha256 } from '@noble/hashes/sha2.js'

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number
  /** Uniform integer in [0, n). */
  int(n: number): number
  /** Standard normal (Box–Muller). */
  normal(): number
}

export function createRng(seed: number): Rng {
  let s = seed >>> 0
  const splitmix = (): number => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
    return (z ^ (z >>> 16)) >>> 0
  }
  let a = splitmix()
  let b = splitmix()
  let c = splitmix()
  let d = splitmix() | 1
  const u32 = (): number => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
  for (let i = 0; i < 12; i++) u32()
  const next = (): number => u32() / 4294967296
  return {
    next,
    int: (n) => Math.floor(next() * n),
    normal: () => {
      const u = 1 - next()
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next())
    },
  }
}

/** Fisher–Yates shuffle in place. */
export function shuffleInPlace(a: Uint32Array | number[], rng: Rng): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
}

/** A 32-bit seed every party derives alike from a shared string (e.g. a job id). */
export function seedFromString(s: string): number {
  const h = sha256(new TextEncoder().encode(s))
  return ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0
}
