import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { canonicalBytes } from '../crypto/canonical.ts'

/**
 * Signatures on protocol objects: Ed25519 by a member's libp2p key over a domain-separation line and the
 * object's canonical JSON, so a signature made for one kind of object never verifies as another. Ed25519 peer
 * ids embed the public key, so a signature is checked against the peer id alone.
 */
export function signingBytes(domain: string, value: unknown): Uint8Array {
  const prefix = new TextEncoder().encode(`syndicate/${domain}\n`)
  const body = canonicalBytes(value)
  const out = new Uint8Array(prefix.length + body.length)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}

export async function signValue(domain: string, value: unknown, key: PrivateKey): Promise<string> {
  return Buffer.from(await key.sign(signingBytes(domain, value))).toString('base64')
}

/** True when `signature` (base64) is `peerId`'s signature of `value` under `domain`; false on any malformation. */
export async function verifyValue(
  domain: string,
  value: unknown,
  peerId: string,
  signature: string,
): Promise<boolean> {
  try {
    const pk = peerIdFromString(peerId).publicKey
    return (
      pk !== undefined && (await pk.verify(signingBytes(domain, value), Buffer.from(signature, 'base64')))
    )
  } catch {
    return false
  }
}

export const Base64Signature = /^[A-Za-z0-9+/]{86}==$/
