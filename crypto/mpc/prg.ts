/**
 * A pseudo-random generator for ring elements: the AES-128-CTR keystream of node:crypto under a 16-byte seed
 * drawn from the CSPRNG. Two parties holding the same seed draw the same stream, which is how pairwise seeds
 * replace sending random shares (input sharing, dealer triples). Callers must draw in the same order on both
 * sides; protocols guarantee that by running the same program on every party.
 */
import { type Cipheriv, createCipheriv, randomBytes } from 'node:crypto'
import { SyndicateError } from '../errors.ts'
import type { Ring } from './ring.ts'

export const SEED_BYTES = 16
// Plaintext of the keystream, kept at the longest request so far; only ever read.
let zeros = new Uint8Array(0)

export function freshSeed(): Uint8Array {
  return new Uint8Array(randomBytes(SEED_BYTES))
}

export class Prg {
  private readonly cipher: Cipheriv

  constructor(seed: Uint8Array) {
    if (seed.byteLength !== SEED_BYTES) {
      throw new SyndicateError(
        'ERR_MPC_BAD_SEED',
        `a PRG seed must be ${SEED_BYTES} bytes, got ${seed.byteLength}`,
      )
    }
    this.cipher = createCipheriv('aes-128-ctr', seed, new Uint8Array(16))
  }

  /** The next `n` uniformly random ring elements of the stream. */
  ring(n: number): Ring {
    if (zeros.length < 8 * n) zeros = new Uint8Array(8 * n)
    const b = this.cipher.update(zeros.subarray(0, 8 * n))
    // The keystream's own buffer when it is exactly this output (callers may view `.buffer` whole); else a copy.
    if (b.byteOffset === 0 && b.buffer.byteLength === 8 * n) return new BigUint64Array(b.buffer, 0, n)
    const out = new BigUint64Array(n)
    new Uint8Array(out.buffer).set(b)
    return out
  }

  /** The next `n` uniformly random bits (0/1) as ring elements. */
  bits(n: number): Ring {
    const bytes = this.cipher.update(new Uint8Array(Math.ceil(n / 8)))
    const out = new BigUint64Array(n)
    const w = new Uint32Array(out.buffer)
    for (let i = 0; i < n; i++) w[2 * i] = (bytes[i >>> 3] >>> (i & 7)) & 1
    return out
  }
}

/** A PRG under a fresh CSPRNG seed, for randomness that no other party needs to reproduce. */
export function privatePrg(): Prg {
  return new Prg(freshSeed())
}
