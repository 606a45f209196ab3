import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { signingBytes } from '../crypto/canonical.ts'
import { ed25519Sign, toHex, verifySignatureAsync } from '../governance/keys.ts'

/**
 * Signatures on protocol objects: Ed25519 by a member's libp2p key over a domain-separation line and the
 * object's canonical JSON, so a signature made for one kind of object never verifies as another. Ed25519 peer
 * ids embed the public key, so a signature is checked against the peer id alone.
 */
export { signingBytes }

// libp2p's PrivateKey.sign imports the key into node:crypto on every call; a job costs a dozen signatures.
const signers = new WeakMap<PrivateKey, (message: Uint8Array) => Promise<Uint8Array>>()

export async function signValue(domain: string, value: unknown, key: PrivateKey): Promise<string> {
  const message = signingBytes(domain, value)
  if (key.type !== 'Ed25519') return Buffer.from(await key.sign(message)).toString('base64')
  let sign = signers.get(key)
  if (!sign) {
    sign = ed25519Sign(key.raw)
    signers.set(key, sign)
  }
  return Buffer.from(await sign(message)).toString('base64')
}

/** Public keys (hex) of peer ids seen, so a peer id's base58 is decoded once; null for non-Ed25519 ids. */
const publicKeys = new Map<string, string | null>()

function publicKeyHexOf(peerId: string): string | null {
  let hex = publicKeys.get(peerId)
  if (hex === undefined) {
    try {
      const pk = peerIdFromString(peerId).publicKey
      hex = pk?.type === 'Ed25519' ? toHex(pk.raw) : null
    } catch {
      hex = null
    }
    if (publicKeys.size > 10_000) publicKeys.clear()
    publicKeys.set(peerId, hex)
  }
  return hex
}

/**
 * True when `signature` (base64) is `peerId`'s signature of `value` under `domain`; false on any malformation.
 * Checked on libuv's thread pool: a node verifying many messages at once keeps its event loop free.
 */
export async function verifyValue(
  domain: string,
  value: unknown,
  peerId: string,
  signature: string,
): Promise<boolean> {
  const hex = publicKeyHexOf(peerId)
  if (hex === null) return false
  return verifySignatureAsync(hex, signingBytes(domain, value), Buffer.from(signature, 'base64'))
}

export const Base64Signature = /^[A-Za-z0-9+/]{86}==$/
