import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { ed25519 } from '@noble/curves/ed25519.js'
import { z } from 'zod'
import { SyndicateError } from '../crypto/errors.ts'

/**
 * Consortium members as the governance log sees them: a display name, the libp2p peer id and the raw
 * Ed25519 public key the peer id is derived from. The node's identity key signs its log entries, its
 * checkpoints and its cosignatures (each under its own domain-separation prefix).
 */

export const ERR_GOV_MEMBER = 'ERR_GOV_MEMBER'

export const Hex32 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 32 bytes as 64 lowercase hex digits')
export const Hex64 = z.string().regex(/^[0-9a-f]{128}$/, 'expected 64 bytes as 128 lowercase hex digits')
/** libp2p peer ids in their base58btc string form (Ed25519 ids start with 12D3KooW). */
export const PeerIdString = z
  .string()
  .regex(/^[1-9A-HJ-NP-Za-km-z]{16,128}$/, 'expected a base58btc libp2p peer id')
export const MemberName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}]+$/u, 'control characters are not allowed')

export const MemberSchema = z.strictObject({ name: MemberName, peerId: PeerIdString, publicKey: Hex32 })
export type Member = z.infer<typeof MemberSchema>

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/**
 * Normalises and checks a member: the public key may be given as hex or raw bytes, and the peer id must be
 * the one libp2p derives from that key, so a member list cannot pair a peer id with someone else's key.
 */
export function memberFrom(input: { name: string; peerId: string; publicKey: string | Uint8Array }): Member {
  const publicKey =
    typeof input.publicKey === 'string' ? input.publicKey.toLowerCase() : toHex(input.publicKey)
  const parsed = MemberSchema.safeParse({ name: input.name, peerId: input.peerId, publicKey })
  if (!parsed.success) {
    throw new SyndicateError(
      ERR_GOV_MEMBER,
      `invalid member ${input.name}: ${parsed.error.issues[0].message}`,
      {
        peerId: input.peerId,
      },
    )
  }
  const derived = peerIdOf(fromHex(publicKey))
  if (derived !== parsed.data.peerId) {
    throw new SyndicateError(
      ERR_GOV_MEMBER,
      `member ${input.name}: peer id ${input.peerId} does not belong to public key ${publicKey} (that key's peer id is ${derived})`,
      { peerId: input.peerId },
    )
  }
  return parsed.data
}

/** A member from a consortium document entry: Ed25519 peer ids embed their public key. */
export function memberFromPeerId(name: string, peerId: string): Member {
  let raw: Uint8Array | undefined
  try {
    raw = peerIdFromString(peerId).publicKey?.raw
  } catch {
    raw = undefined
  }
  if (raw?.byteLength !== 32) {
    throw new SyndicateError(ERR_GOV_MEMBER, `member ${name}: ${peerId} is not an Ed25519 peer id`, {
      peerId,
    })
  }
  return memberFrom({ name, peerId, publicKey: raw })
}

export function peerIdOf(rawPublicKey: Uint8Array): string {
  return peerIdFromPublicKey(publicKeyFromRaw(rawPublicKey)).toString()
}

/** Signs with the node's identity key; `sign` may be backed by a libp2p PrivateKey (sync or async). */
export interface Signer {
  readonly member: Member
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>
}

/**
 * A signer from a raw Ed25519 private key: the 32-byte seed, or libp2p's 64-byte `raw` form (seed ‖ public
 * key). Signing goes through node:crypto, several times faster than the pure-JS path.
 */
export function signerFromSeed(name: string, secret: Uint8Array): Signer {
  const seed = checkSecret(secret)
  const publicKey = ed25519.getPublicKey(seed)
  const member = memberFrom({ name, peerId: peerIdOf(publicKey), publicKey })
  return { member, sign: ed25519Sign(seed, publicKey) }
}

/**
 * Ed25519 signing with a key imported into node:crypto once (importing costs about as much as signing, and
 * libp2p's PrivateKey.sign re-imports the key on every call). A signature asked for alone is made at once on
 * the calling thread, the quickest answer; when several are asked for together (a group of log entries,
 * many jobs at once) the others go to libuv's thread pool, where they cost the calling thread a third of a
 * signature each and use the machine's other cores. `secret` as in signerFromSeed; with the 64-byte form
 * the public key is taken from it.
 */
export function ed25519Sign(
  secret: Uint8Array,
  publicKey?: Uint8Array,
): (message: Uint8Array) => Promise<Uint8Array> {
  const seed = checkSecret(secret)
  const pub = publicKey ?? (secret.byteLength === 64 ? secret.subarray(32) : ed25519.getPublicKey(seed))
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: b64url(seed), x: b64url(pub) },
    format: 'jwk',
  })
  let pending = 0
  let busyTick = false
  return (message) => {
    if (pending === 0 && !busyTick) {
      busyTick = true
      queueMicrotask(() => {
        busyTick = false
      })
      return Promise.resolve(new Uint8Array(sign(null, message, key)))
    }
    pending++
    return new Promise((resolve, reject) =>
      sign(null, message, key, (err, sig) => {
        pending--
        if (err) reject(err)
        else resolve(new Uint8Array(sig))
      }),
    )
  }
}

function checkSecret(secret: Uint8Array): Uint8Array {
  if (secret.byteLength !== 32 && secret.byteLength !== 64) {
    throw new SyndicateError(
      ERR_GOV_MEMBER,
      `an Ed25519 private key has 32 or 64 bytes, not ${secret.byteLength}`,
    )
  }
  return secret.subarray(0, 32)
}

const keyCache = new Map<string, KeyObject | null>()

/** The node:crypto key object for a raw public key (hex), cached: importing costs about as much as verifying. */
function publicKeyObject(publicKeyHex: string): KeyObject | null {
  let key = keyCache.get(publicKeyHex)
  if (key === undefined) {
    try {
      key = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: b64url(fromHex(publicKeyHex)) },
        format: 'jwk',
      })
    } catch {
      key = null
    }
    if (keyCache.size > 10_000) keyCache.clear()
    keyCache.set(publicKeyHex, key)
  }
  return key
}

/** Ed25519 verification (RFC 8032) of `signature` over `message`; false on any malformed input. */
export function verifySignature(publicKeyHex: string, message: Uint8Array, signature: Uint8Array): boolean {
  const key = publicKeyObject(publicKeyHex)
  if (!key || signature.byteLength !== 64) return false
  try {
    return verify(null, message, key, signature)
  } catch {
    return false
  }
}

/**
 * The same check on libuv's thread pool, so bulk verification (an auditor checking a whole log) uses the
 * machine's other cores while the main thread hashes and parses.
 */
export function verifySignatureAsync(
  publicKeyHex: string,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const key = publicKeyObject(publicKeyHex)
  if (!key || signature.byteLength !== 64) return Promise.resolve(false)
  return new Promise((resolve) => {
    try {
      verify(null, message, key, signature, (err, ok) => resolve(!err && ok))
    } catch {
      resolve(false)
    }
  })
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}
