/**
 * AES-256-GCM with a random 96-bit nonce, laid out as nonce ‖ ciphertext ‖ tag. The associated data binds a
 * box to its context (job, sender, chunk index), so a box moved to another context fails to open.
 */
import { createCipheriv, createDecipheriv, type KeyObject, randomBytes } from 'node:crypto'

export const AEAD_NONCE_BYTES = 12
const NONCE = AEAD_NONCE_BYTES
const TAG = 16
export const AEAD_OVERHEAD = NONCE + TAG
export const AEAD_KEY_BYTES = 32

/**
 * `key` may be a KeyObject (saves node's per-call key checks where many boxes use one key); `nonce` must be
 * random, and callers sealing many boxes may draw all their nonces with one CSPRNG call.
 */
export function aeadSeal(
  key: Uint8Array | KeyObject,
  plain: Uint8Array,
  aad: Uint8Array,
  nonce: Uint8Array = randomBytes(NONCE),
): Uint8Array {
  const c = createCipheriv('aes-256-gcm', key, nonce).setAAD(aad)
  const body = Buffer.concat([c.update(plain), c.final()])
  return new Uint8Array(Buffer.concat([nonce, body, c.getAuthTag()]))
}

/** Opens an `aeadSeal` box; null if it was tampered with or sealed under another key or context. */
export function aeadOpen(key: Uint8Array | KeyObject, box: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (box.length < AEAD_OVERHEAD) return null
  try {
    const d = createDecipheriv('aes-256-gcm', key, box.subarray(0, NONCE)).setAAD(aad)
    d.setAuthTag(box.subarray(box.length - TAG))
    return new Uint8Array(Buffer.concat([d.update(box.subarray(NONCE, box.length - TAG)), d.final()]))
  } catch {
    return null
  }
}
