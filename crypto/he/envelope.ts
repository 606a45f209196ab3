import { createHash } from 'node:crypto'
import { SyndicateError } from '../errors.ts'

/**
 * The wire envelope for HE material. SEAL's own serialisation says nothing about *which* key a ciphertext is
 * under, and decrypting under the wrong secret key silently yields noise; so every blob we send carries the
 * parameter hash and the key fingerprint (a hash of the public key) and a SHA-256 digest over the whole, and
 * receivers check them before SEAL parses a byte.
 *
 * Layout (big-endian):
 *   'SYHE' | version u8 | kind u8 | 0 u16 | paramsHash[32] | keyId[32] | metaLen u32 | meta (JSON)
 *   | partCount u32 | (partLen u32 | part)* | sha256(all of the above)[32]
 *
 * The digest detects corruption and accidental mix-ups; authenticity of the sender comes from the
 * authenticated transport (Noise), since a public-key-only party has no secret to sign with here.
 */
export const ENVELOPE_KIND = { publicKeys: 1, ciphertext: 2, secretKey: 3 } as const
export type EnvelopeKind = (typeof ENVELOPE_KIND)[keyof typeof ENVELOPE_KIND]

export interface Envelope {
  kind: EnvelopeKind
  paramsHash: Uint8Array
  keyId: Uint8Array
  meta: Record<string, unknown>
  parts: Uint8Array[]
}

const MAGIC = [0x53, 0x59, 0x48, 0x45] // 'SYHE'
const VERSION = 1
const HASH = 32
const HEADER = 8 + HASH + HASH
const MAX_META = 64 * 1024
const MAX_PARTS = 4096

export function sha256(...chunks: Uint8Array[]): Uint8Array {
  const h = createHash('sha256')
  for (const c of chunks) h.update(c)
  return new Uint8Array(h.digest())
}

export function sealEnvelope(e: Envelope): Uint8Array {
  if (e.paramsHash.length !== HASH || e.keyId.length !== HASH) {
    throw new SyndicateError('ERR_HE_INTERNAL', 'envelope hashes must be 32 bytes', {})
  }
  const meta = new TextEncoder().encode(JSON.stringify(e.meta))
  const size = HEADER + 4 + meta.length + 4 + e.parts.reduce((s, p) => s + 4 + p.length, 0) + HASH
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  out.set(MAGIC, 0)
  out[4] = VERSION
  out[5] = e.kind
  out.set(e.paramsHash, 8)
  out.set(e.keyId, 8 + HASH)
  let at = HEADER
  view.setUint32(at, meta.length)
  out.set(meta, at + 4)
  at += 4 + meta.length
  view.setUint32(at, e.parts.length)
  at += 4
  for (const p of e.parts) {
    view.setUint32(at, p.length)
    out.set(p, at + 4)
    at += 4 + p.length
  }
  out.set(sha256(out.subarray(0, at)), at)
  return out
}

/** Parses and checks an envelope; parts are views into `bytes`. Throws ERR_HE_MALFORMED on any defect. */
export function openEnvelope(bytes: Uint8Array, kind: EnvelopeKind): Envelope {
  const bad = (why: string) =>
    new SyndicateError('ERR_HE_MALFORMED', `malformed HE envelope: ${why}`, { why })
  if (!(bytes instanceof Uint8Array)) throw bad('not a byte array')
  if (bytes.length < HEADER + 8 + HASH) throw bad('too short')
  if (MAGIC.some((b, i) => bytes[i] !== b)) throw bad('not an HE envelope (bad magic)')
  if (bytes[4] !== VERSION) throw bad(`unsupported version ${bytes[4]}`)
  if (bytes[5] !== kind) throw bad(`expected kind ${kind}, got ${bytes[5]}`)
  const body = bytes.subarray(0, bytes.length - HASH)
  const digest = sha256(body)
  const given = bytes.subarray(bytes.length - HASH)
  if (!bytesEqual(digest, given)) throw bad('digest mismatch (corrupted or truncated)')
  const view = new DataView(bytes.buffer, bytes.byteOffset, body.length)
  let at = HEADER
  const metaLen = view.getUint32(at)
  if (metaLen > MAX_META || at + 4 + metaLen + 4 > body.length) throw bad('meta length out of range')
  let meta: unknown
  try {
    meta = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(at + 4, at + 4 + metaLen)),
    )
  } catch {
    throw bad('meta is not JSON')
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw bad('meta is not an object')
  at += 4 + metaLen
  const count = view.getUint32(at)
  at += 4
  if (count > MAX_PARTS) throw bad('too many parts')
  const parts: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    if (at + 4 > body.length) throw bad('truncated part header')
    const len = view.getUint32(at)
    if (at + 4 + len > body.length) throw bad('part length out of range')
    parts.push(body.subarray(at + 4, at + 4 + len))
    at += 4 + len
  }
  if (at !== body.length) throw bad('trailing bytes')
  return {
    kind,
    paramsHash: bytes.slice(8, 8 + HASH),
    keyId: bytes.slice(8 + HASH, HEADER),
    meta: meta as Record<string, unknown>,
    parts,
  }
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
