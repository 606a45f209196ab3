/**
 * X25519 for node:crypto on raw 32-byte values. node:crypto takes keys as KeyObjects or key material, built
 * here from the fixed DER prefixes of RFC 8410. Public keys go in as PEM text, which OpenSSL decodes about 3x
 * faster than DER, JWK or 'raw-public' (measured CPU per multiplication including the import: 45 µs with a PEM
 * string passed straight to diffieHellman, 47.5 µs through createPublicKey, 77 µs raw, 37 µs for the bare
 * multiplication on a pre-imported key).
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto'

const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

export function x25519PrivateKey(scalar: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' })
}

const spki = Buffer.alloc(44)
SPKI_PREFIX.copy(spki)

function pem(u: Uint8Array): string {
  spki.set(u, 12)
  return `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`
}

export function x25519PublicKey(u: Uint8Array): KeyObject {
  return createPublicKey(pem(u))
}

/** The raw 32-byte public key (u-coordinate of scalar·9) of a private key. */
export function x25519RawPublic(priv: KeyObject): Uint8Array {
  return new Uint8Array(createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(12))
}

/** X25519(scalar, u); throws for low-order u (the result would be zero). */
export function x25519(priv: KeyObject, u: Uint8Array): Buffer {
  // Key material straight in: saves building a KeyObject per point.
  return diffieHellman({ privateKey: priv, publicKey: pem(u) })
}
