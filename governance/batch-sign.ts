import { verifySignature, verifySignatureAsync } from './keys.ts'
import {
  HASH_BYTES,
  inclusionProofRanges,
  type LeafRange,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  splitPoint,
} from './merkle.ts'

/**
 * Batch signatures: the messages a node signs during one turn of its event loop share Ed25519 signatures, one
 * per MAX_BATCH of them, over the RFC 6962 Merkle root of their hashes, and each message carries what is needed
 * to check it alone:
 *
 *   signature = Ed25519 signature (64 bytes) ‖ u32 index ‖ u32 size ‖ inclusion path (32 bytes per hash)
 *   signed    = "syndicate-batch/v1\n" ‖ u32 size ‖ root,  root = MTH(leaf(m_0) … leaf(m_size-1))
 *
 * with leaf(m) = SHA-256(0x00 ‖ m) and the path of RFC 6962 §2.1.1. A batch of one is a plain Ed25519
 * signature of the message itself (64 bytes), as before batching. Each message already begins with its own
 * domain-separation prefix, and the batch prefix starts no other signed text, so a batch signature never
 * verifies as anything else. Changing any byte of a message changes the root its path leads to, so an altered
 * message fails alone; the others of its batch still verify. Verifying many messages of one batch costs one
 * Ed25519 verification (verified roots are cached) and a few hashes each.
 */
const BATCH_PREFIX = new TextEncoder().encode('syndicate-batch/v1\n')
const SIGNATURE_BYTES = 64
const HEADER_BYTES = SIGNATURE_BYTES + 8
/**
 * Most messages under one signature. Small: a path of at most 4 hashes keeps every signed object (and each
 * log entry) short, which costs more in parsing and hashing everywhere than the extra signatures (one per 16
 * messages) cost the signer.
 */
export const MAX_BATCH = 16
/** Longest path: ceil(log2(MAX_BATCH)). */
const MAX_PATH = Math.ceil(Math.log2(MAX_BATCH))
/** Longest signature in bytes: what a schema must admit. */
export const MAX_SIGNATURE_BYTES = HEADER_BYTES + MAX_PATH * HASH_BYTES

type Sign = (message: Uint8Array) => Uint8Array | Promise<Uint8Array>

interface Pending {
  message: Uint8Array
  resolve(signature: Uint8Array): void
  reject(e: Error): void
}

/**
 * Wraps `sign` (Ed25519 with the node's key) so that messages asked for in the same turn of the event loop
 * are signed together: one signature per up to MAX_BATCH messages. Resolves each with its own signature.
 */
export function batchSigner(sign: Sign): (message: Uint8Array) => Promise<Uint8Array> {
  let queue: Pending[] = []
  const flush = () => {
    const all = queue
    queue = []
    for (let i = 0; i < all.length; i += MAX_BATCH) signBatch(sign, all.slice(i, i + MAX_BATCH))
  }
  return (message) =>
    new Promise((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush)
      queue.push({ message, resolve, reject })
    })
}

/** Signs messages already gathered (a group of log entries): one signature per MAX_BATCH of them. */
export function signMessages(sign: Sign, messages: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const pending: Pending[] = []
  const signatures = messages.map(
    (message) => new Promise<Uint8Array>((resolve, reject) => pending.push({ message, resolve, reject })),
  )
  for (let i = 0; i < pending.length; i += MAX_BATCH) signBatch(sign, pending.slice(i, i + MAX_BATCH))
  return Promise.all(signatures)
}

function signBatch(sign: Sign, batch: Pending[]): void {
  if (batch.length === 1) {
    const [only] = batch
    Promise.resolve()
      .then(() => sign(only.message))
      .then(only.resolve, only.reject)
    return
  }
  const leaves = batch.map((p) => leafHash(p.message))
  const tree = new SubtreeHashes(leaves)
  const root = tree.hash({ start: 0, end: leaves.length })
  Promise.resolve()
    .then(() => sign(batchMessage(leaves.length, root)))
    .then(
      (sig) => {
        for (const [i, p] of batch.entries()) {
          const path = inclusionProofRanges(i, leaves.length).map((r) => tree.hash(r))
          const out = new Uint8Array(HEADER_BYTES + path.length * HASH_BYTES)
          out.set(sig)
          const view = new DataView(out.buffer)
          view.setUint32(SIGNATURE_BYTES, i)
          view.setUint32(SIGNATURE_BYTES + 4, leaves.length)
          for (const [k, h] of path.entries()) out.set(h, HEADER_BYTES + k * HASH_BYTES)
          p.resolve(out)
        }
      },
      (e: Error) => {
        for (const p of batch) p.reject(e)
      },
    )
}

/** MTH of leaf ranges, each subtree hashed once however many paths use it. */
class SubtreeHashes {
  private readonly leaves: readonly Uint8Array[]
  private readonly memo = new Map<string, Uint8Array>()

  constructor(leaves: readonly Uint8Array[]) {
    this.leaves = leaves
  }

  hash(r: LeafRange): Uint8Array {
    const n = r.end - r.start
    if (n === 1) return this.leaves[r.start]
    const key = `${r.start}:${r.end}`
    let h = this.memo.get(key)
    if (!h) {
      const k = splitPoint(n)
      h = nodeHash(
        this.hash({ start: r.start, end: r.start + k }),
        this.hash({ start: r.start + k, end: r.end }),
      )
      this.memo.set(key, h)
    }
    return h
  }
}

function batchMessage(size: number, root: Uint8Array): Uint8Array {
  const out = new Uint8Array(BATCH_PREFIX.byteLength + 4 + HASH_BYTES)
  out.set(BATCH_PREFIX)
  new DataView(out.buffer).setUint32(BATCH_PREFIX.byteLength, size)
  out.set(root, BATCH_PREFIX.byteLength + 4)
  return out
}

/**
 * What a signature asks the verifier to check with Ed25519: the message itself (a plain signature), or the
 * batch root its path leads to; undefined when the signature is malformed.
 */
function resolve(
  message: Uint8Array,
  signature: Uint8Array,
): { signed: Uint8Array; sig: Uint8Array; root?: string } | undefined {
  if (signature.byteLength === SIGNATURE_BYTES) return { signed: message, sig: signature }
  if (signature.byteLength < HEADER_BYTES || (signature.byteLength - HEADER_BYTES) % HASH_BYTES !== 0)
    return undefined
  const view = new DataView(signature.buffer, signature.byteOffset, signature.byteLength)
  const index = view.getUint32(SIGNATURE_BYTES)
  const size = view.getUint32(SIGNATURE_BYTES + 4)
  if (size < 2 || size > MAX_BATCH) return undefined
  const path: Uint8Array[] = []
  for (let at = HEADER_BYTES; at < signature.byteLength; at += HASH_BYTES)
    path.push(signature.subarray(at, at + HASH_BYTES))
  const root = rootFromInclusionProof(index, size, leafHash(message), path)
  if (!root) return undefined
  const signed = batchMessage(size, root)
  return { signed, sig: signature.subarray(0, SIGNATURE_BYTES), root: Buffer.from(signed).toString('hex') }
}

/** Batch roots (with key and signature) that verified; bounded, oldest dropped first. */
const verifiedRoots = new Set<string>()
/** Checks of a root under way, so the messages of one batch arriving together cost one verification. */
const checking = new Map<string, Promise<boolean>>()
const ROOT_CACHE = 20_000

function remember(key: string): void {
  verifiedRoots.add(key)
  if (verifiedRoots.size > ROOT_CACHE) verifiedRoots.delete(verifiedRoots.values().next().value as string)
}

function rootKey(publicKeyHex: string, r: { root?: string; sig: Uint8Array }): string {
  return `${publicKeyHex}:${r.root}:${Buffer.from(r.sig).toString('hex')}`
}

/**
 * True when `signature` (plain or batch form) is `publicKeyHex`'s signature of `message`; false on any
 * malformation. The Ed25519 check runs on libuv's thread pool.
 */
export function verifyBatchSignatureAsync(
  publicKeyHex: string,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const r = resolve(message, signature)
  if (!r) return Promise.resolve(false)
  if (!r.root) return verifySignatureAsync(publicKeyHex, r.signed, r.sig)
  const key = rootKey(publicKeyHex, r)
  if (verifiedRoots.has(key)) return Promise.resolve(true)
  let p = checking.get(key)
  if (!p) {
    p = verifySignatureAsync(publicKeyHex, r.signed, r.sig).then((ok) => {
      checking.delete(key)
      if (ok) remember(key)
      return ok
    })
    checking.set(key, p)
  }
  return p
}

/** The same check on the calling thread (offline verification); shares the cache of verified roots. */
export function verifyBatchSignature(
  publicKeyHex: string,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  const r = resolve(message, signature)
  if (!r) return false
  if (!r.root) return verifySignature(publicKeyHex, r.signed, r.sig)
  const key = rootKey(publicKeyHex, r)
  if (verifiedRoots.has(key)) return true
  const ok = verifySignature(publicKeyHex, r.signed, r.sig)
  if (ok) remember(key)
  return ok
}
