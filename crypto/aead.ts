/**
 * AES-256-GCM with a random 96-bit nonce, laid out as nonce ‖ ciphertext ‖ tag. The associated data binds a
 * box to its context (job, sender, chunk index), so a box moved to another context fails to open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

const NONCE = 12
const TAG = 16
export const AEAD_OVERHEAD = NONCE + TAG
export const AEAD_KEY_BYTES = 32

export function aeadSeal(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE)
  const c = createCipheriv('aes-256-gcm', key, nonce).setAAD(aad)
  const body = Buffer.concat([c.update(plain), c.final()])
  return new Uint8Array(Buffer.concat([nonce, body, c.getAuthTag()]))
}

/** Opens an `aeadSeal` box; null if it was tampered with or sealed under another key or context. */
export function aeadOpen(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (box.length < AEAD_OVERHEAD) return null
  try {
    const d = createDecipheriv('aes-256-gcm', key, box.subarray(0, NONCE)).setAAD(aad)
    d.setAuthTag(box.subarray(box.length - TAG))
    return new Uint8Array(Buffer.concat([d.update(box.subarray(NONCE, box.length - TAG)), d.final()]))
  } catch {
    return null
  }
}
