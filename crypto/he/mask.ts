import { randomBytes } from 'node:crypto'

/**
 * Random masks for BFV slot values, from the CSPRNG. Values are centred in (-t/2, t/2) like decrypted BFV slots.
 * A zero-sum mask is uniform over all vectors whose slots sum to 0 mod t: added to an encrypted vector, it hides
 * every slot perfectly while keeping the slot sum, so the key owner can decrypt and learn exactly the sum and
 * nothing else. This replaces log2(slots) rotations (and their Galois keys) by one plaintext addition.
 */
export function zeroSumMask(length: number, t: bigint): BigInt64Array {
  const out = new BigInt64Array(length)
  let sum = 0n
  const limit = (2n ** 64n / t) * t // rejection bound: values below it are uniform mod t
  let pool = new BigUint64Array(0)
  let at = 0
  for (let i = 0; i < length - 1; i++) {
    let r: bigint
    do {
      if (at === pool.length) {
        pool = new BigUint64Array(new Uint8Array(randomBytes(8 * Math.max(64, length - i))).buffer)
        at = 0
      }
      r = pool[at++]
    } while (r >= limit)
    const v = r % t
    sum += v
    out[i] = centre(v, t)
  }
  if (length > 0) out[length - 1] = centre(((-sum % t) + t) % t, t)
  return out
}

/** The representative of v mod t in (-t/2, t/2]. */
export function centre(v: bigint, t: bigint): bigint {
  const r = ((v % t) + t) % t
  return r > t / 2n ? r - t : r
}
