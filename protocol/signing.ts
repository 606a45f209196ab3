import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { signingBytes } from '../crypto/canonical.ts'
import { batchSigner, MAX_SIGNATURE_BYTES, verifyBatchSignatureAsync } from '../governance/batch-sign.ts'
import { ed25519Sign, toHex } from '../governance/keys.ts'

/**
 * Signatures on protocol objects: Ed25519 by a member's libp2p key over a domain-separation line and the
 * object's canonical JSON, so a signature made for one kind of object never verifies as another. Ed25519 peer
 * ids embed the public key, so a signature is checked against the peer id alone.
 */
export { signingBytes }

// libp2p's PrivateKey.sign imports the key into node:crypto on every call; a job costs a dozen signatures.
const signers = new WeakMap<
  PrivateKey,
  { plain: (m: Uint8Array) => Promise<Uint8Array>; batched: (m: Uint8Array) => Promise<Uint8Array> }
>()

/**
 * `key`'s signature (base64) of `value` under `domain`. With `batch`, the values signed during one turn of the
 * event loop share one signature per 16 over their Merkle root, each carrying its path
 * (governance/batch-sign.ts): for the many small messages of jobs negotiated at once. Without, a plain 64-byte
 * Ed25519 signature.
 */
export async function signValue(
  domain: string,
  value: unknown,
  key: PrivateKey,
  opts: { batch?: boolean } = {},
): Promise<string> {
  const message = signingBytes(domain, value)
  if (key.type !== 'Ed25519') return Buffer.from(await key.sign(message)).toString('base64')
  let s = signers.get(key)
  if (!s) {
    const plain = ed25519Sign(key.raw)
    s = { plain, batched: batchSigner(plain) }
    signers.set(key, s)
  }
  return Buffer.from(await (opts.batch ? s.batched : s.plain)(message)).toString('base64')
}

/**
 * `body` with `key`'s signature under `domain` (signValue) as its `signature` member. The members are put in
 * sorted order (a shallow re-ordering: nested objects are kept as they are, already in order when they are
 * parsed messages or built here), so that encoding the object again takes canonicalJson's fast path.
 */
export async function signObject<T extends Record<string, unknown>>(
  domain: string,
  body: T,
  key: PrivateKey,
  opts: { batch?: boolean } = {},
): Promise<T & { signature: string }> {
  const signature = await signValue(domain, body, key, opts)
  const entries = Object.entries({ ...body, signature }).sort(([a], [b]) => (a < b ? -1 : 1))
  return Object.fromEntries(entries) as T & { signature: string }
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
 * True when `signature` (base64, plain or batch form) is `peerId`'s signature of `value` under `domain`; false on
 * any malformation.
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
  return verifyBatchSignatureAsync(hex, signingBytes(domain, value), Buffer.from(signature, 'base64'))
}

/** A signature in base64: plain Ed25519 (64 bytes) or the batch form, at most MAX_SIGNATURE_BYTES. */
export const Base64Signature = new RegExp(
  `^(?:[A-Za-z0-9+/]{86}==|[A-Za-z0-9+/]{138,${Math.ceil((MAX_SIGNATURE_BYTES * 4) / 3)}}={0,2})$`,
)
