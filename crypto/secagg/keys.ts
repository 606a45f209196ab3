/**
 * Key material for secure aggregation: X25519 key pairs whose secret is a field element of GF(2^255 - 19), so
 * that it can be Shamir-shared as is; HKDF-derived AES-256-GCM keys and PRG seeds bound to the session.
 */
import { createCipheriv, createDecipheriv, hkdfSync, type KeyObject, randomBytes } from 'node:crypto'
import { SEED_BYTES } from '../mpc/prg.ts'
import { x25519, x25519PrivateKey, x25519RawPublic } from '../psi/x25519.ts'
import { fieldToBytes, randomFieldElement } from '../shamir.ts'

export interface KeyPair {
  /** The secret as a field element (what gets Shamir-shared). */
  secret: bigint
  priv: KeyObject
  pub: Uint8Array
}

export function newKeyPair(): KeyPair {
  return keyPairFromSecret(randomFieldElement())
}

export function keyPairFromSecret(secret: bigint): KeyPair {
  const priv = x25519PrivateKey(fieldToBytes(secret))
  return { secret, priv, pub: x25519RawPublic(priv) }
}

/** A key derived from the X25519 agreement of `priv` with `peerPub`, bound to the session and purpose. */
export function agree(
  priv: KeyObject,
  peerPub: Uint8Array,
  session: string,
  purpose: string,
  bytes: number,
): Uint8Array {
  return derive(x25519(priv, peerPub), session, purpose, bytes)
}

export function derive(ikm: Uint8Array, session: string, purpose: string, bytes: number): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, session, `syndicate/secagg/${purpose}`, bytes))
}

/** PRG seed of a self mask from its (Shamir-shared) field element. */
export function selfMaskSeed(b: bigint, session: string): Uint8Array {
  return derive(fieldToBytes(b), session, 'self-mask', SEED_BYTES)
}

const NONCE = 12
const TAG = 16
export const SEAL_OVERHEAD = NONCE + TAG

/** AES-256-GCM: nonce || ciphertext || tag. */
export function seal(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE)
  const c = createCipheriv('aes-256-gcm', key, nonce).setAAD(aad)
  const body = Buffer.concat([c.update(plain), c.final()])
  return new Uint8Array(Buffer.concat([nonce, body, c.getAuthTag()]))
}

/** Opens a `seal` box; null if it was tampered with or sealed under another key or context. */
export function open(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (box.length < SEAL_OVERHEAD) return null
  try {
    const d = createDecipheriv('aes-256-gcm', key, box.subarray(0, NONCE)).setAAD(aad)
    d.setAuthTag(box.subarray(box.length - TAG))
    return new Uint8Array(Buffer.concat([d.update(box.subarray(NONCE, box.length - TAG)), d.final()]))
  } catch {
    return null
  }
}
