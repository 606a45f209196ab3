/**
 * Key material for secure aggregation: X25519 key pairs whose secret is a field element of GF(2^255 - 19), so
 * that it can be Shamir-shared as is; HKDF-derived AES-256-GCM keys and PRG seeds bound to the session.
 *
 * Symmetric keys are KeyObjects: node:crypto takes a raw Uint8Array key (cipher, HKDF) through a slow argument
 * check that costs ~10 µs per call on this machine, against ~1 µs for a KeyObject (measured); a client makes
 * dozens of such calls per aggregation.
 */
import { createSecretKey, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto'
import { SEED_BYTES } from '../mpc/prg.ts'
import { x25519, x25519PrivateKey, x25519RawPublic } from '../psi/x25519.ts'
import { bytesToField, fieldToBytes, SHAMIR_PRIME } from '../shamir.ts'

export interface KeyPair {
  /** The secret as a field element (what gets Shamir-shared). */
  secret: bigint
  priv: KeyObject
  pub: Uint8Array
}

/**
 * A fresh key pair. OpenSSL generates it (a third of the cost of importing a chosen scalar, measured); the
 * secret is its clamped scalar, which is what X25519 multiplies by, so `keyPairFromSecret(secret)` rebuilds the
 * same key pair. A clamped scalar lies in [2^254, 2^255); the few values at or above the field prime are redrawn.
 */
export function newKeyPair(): KeyPair {
  for (;;) {
    const { privateKey } = generateKeyPairSync('x25519')
    const jwk = privateKey.export({ format: 'jwk' })
    const k = Buffer.from(jwk.d ?? '', 'base64url')
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    const secret = bytesToField(k)
    if (secret < SHAMIR_PRIME) return { secret, priv: privateKey, pub: Buffer.from(jwk.x ?? '', 'base64url') }
  }
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
): KeyObject {
  return derive(x25519(priv, peerPub), session, purpose, bytes)
}

export function derive(ikm: Uint8Array, session: string, purpose: string, bytes: number): KeyObject {
  const okm = hkdfSync('sha256', createSecretKey(ikm), session, `syndicate/secagg/${purpose}`, bytes)
  return createSecretKey(new Uint8Array(okm))
}

/** PRG seed of a self mask from its (Shamir-shared) field element. */
export function selfMaskSeed(b: bigint, session: string): KeyObject {
  return derive(fieldToBytes(b), session, 'self-mask', SEED_BYTES)
}
