import { createSecretKey, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { AEAD_NONCE_BYTES as NONCE, aeadOpen as open, aeadSeal as seal } from '../../../crypto/aead.ts'
import { Prg } from '../../../crypto/mpc/prg.ts'
import { agree, keyPairFromSecret, newKeyPair } from '../../../crypto/secagg/keys.ts'
import { applyMasks } from '../../../crypto/secagg/mask.ts'
import { fieldToBytes, SHAMIR_PRIME } from '../../../crypto/shamir.ts'

describe('secure aggregation key material', () => {
  it('a fresh key pair is rebuilt from its shared secret, and agreements match from either side', () => {
    for (let i = 0; i < 20; i++) {
      const a = newKeyPair()
      const b = newKeyPair()
      expect(a.secret).toBeLessThan(SHAMIR_PRIME)
      // The secret is the clamped scalar X25519 uses: low 3 bits clear, bit 254 set, bit 255 clear.
      const k = fieldToBytes(a.secret)
      expect(k[0] & 7).toBe(0)
      expect(k[31] & 0xc0).toBe(0x40)
      const rebuilt = keyPairFromSecret(a.secret)
      expect(Buffer.from(rebuilt.pub)).toEqual(Buffer.from(a.pub))
      const ab = agree(a.priv, b.pub, 's', 'pair-mask', 16).export()
      expect(agree(b.priv, a.pub, 's', 'pair-mask', 16).export()).toEqual(ab)
      expect(agree(rebuilt.priv, b.pub, 's', 'pair-mask', 16).export()).toEqual(ab)
      // Bound to session and purpose.
      expect(agree(a.priv, b.pub, 't', 'pair-mask', 16).export()).not.toEqual(ab)
      expect(agree(a.priv, b.pub, 's', 'self-mask', 16).export()).not.toEqual(ab)
    }
  })

  it('share boxes open only under the same key and context', () => {
    const key = createSecretKey(randomBytes(32))
    const aad = new TextEncoder().encode('s|1|2')
    const box = seal(key, Uint8Array.of(1, 2, 3), aad, randomBytes(NONCE))
    expect(open(key, box, aad)).toEqual(Uint8Array.of(1, 2, 3))
    expect(open(key, box, new TextEncoder().encode('s|2|1'))).toBeNull()
    expect(open(createSecretKey(randomBytes(32)), box, aad)).toBeNull()
    const bad = box.slice()
    bad[NONCE] ^= 1
    expect(open(key, bad, aad)).toBeNull()
  })
})

describe('masks', () => {
  it('add the PRG stream of crypto/mpc/prg.ts mod 2^64 and subtract it back, at any length, several in one pass', () => {
    for (const n of [1, 3, 257, 10_000]) {
      const seed = randomBytes(16)
      const x = new BigUint64Array(randomBytes(8 * n).buffer.slice(0))
      const masked = applyMasks(x, [{ seed: createSecretKey(seed) }])
      const stream = new Prg(new Uint8Array(seed)).ring(n)
      for (let i = 0; i < n; i++) expect(masked[i]).toBe(BigInt.asUintN(64, x[i] + stream[i]))
      expect(applyMasks(masked, [{ seed: createSecretKey(seed), sub: true }])).toEqual(x)
      // two masks at once, one added and one taken off again, and a counter block other than zero
      const other = createSecretKey(randomBytes(16))
      const iv = new Uint8Array(16).fill(7)
      expect(
        applyMasks(x, [
          { seed: createSecretKey(seed) },
          { seed: other, iv },
          { seed: createSecretKey(seed), sub: true },
          { seed: other, iv, sub: true },
        ]),
      ).toEqual(x)
      // The input is left alone.
      expect(masked).not.toEqual(x)
    }
  })
})
