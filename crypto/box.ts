/**
 * Sealed boxes to an X25519 public key (the ECIES shape of HPKE's base mode, built from node:crypto): a fresh
 * ephemeral key pair, X25519 with the recipient's key, HKDF-SHA256 over the shared secret bound to both public
 * keys and a purpose string, then AES-256-GCM under the derived key. Layout: ephemeral public (32) ‖ AEAD box.
 * Only the holder of the recipient's private key opens it; a box sealed for one purpose or context does not
 * open under another.
 */
import { generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto'
import { AEAD_KEY_BYTES, AEAD_OVERHEAD, aeadOpen, aeadSeal } from './aead.ts'
import { x25519, x25519RawPublic } from './psi/x25519.ts'

export const BOX_OVERHEAD = 32 + AEAD_OVERHEAD

export interface BoxKeyPair {
  priv: KeyObject
  pub: Uint8Array
}

export function newBoxKeyPair(): BoxKeyPair {
  const { privateKey } = generateKeyPairSync('x25519')
  return { priv: privateKey, pub: x25519RawPublic(privateKey) }
}

function boxKey(shared: Uint8Array, eph: Uint8Array, recipient: Uint8Array, purpose: string): Uint8Array {
  const salt = Buffer.concat([eph, recipient])
  return new Uint8Array(hkdfSync('sha256', shared, salt, `syndicate/box/v1/${purpose}`, AEAD_KEY_BYTES))
}

export function sealBox(
  recipientPub: Uint8Array,
  plain: Uint8Array,
  purpose: string,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const eph = newBoxKeyPair()
  const key = boxKey(x25519(eph.priv, recipientPub), eph.pub, recipientPub, purpose)
  const body = aeadSeal(key, plain, aad)
  key.fill(0)
  const out = new Uint8Array(32 + body.length)
  out.set(eph.pub)
  out.set(body, 32)
  return out
}

/** Opens a `sealBox` box; null if it is malformed, tampered with, or for another key, purpose or context. */
export function openBox(
  recipient: BoxKeyPair,
  box: Uint8Array,
  purpose: string,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array | null {
  if (box.length < BOX_OVERHEAD) return null
  const eph = box.subarray(0, 32)
  let shared: Uint8Array
  try {
    shared = x25519(recipient.priv, eph)
  } catch {
    return null // a low-order point: not a box anyone sealed honestly
  }
  const key = boxKey(shared, eph, recipient.pub, purpose)
  const plain = aeadOpen(key, box.subarray(32), aad)
  key.fill(0)
  return plain
}
