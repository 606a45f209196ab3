/**
 * Messages of the tree protocols: a JSON header plus binary parts (ciphertexts, row lists, bit sets),
 * `u32 headerLength | header | u32 partCount | (u32 length | bytes)*`, little-endian. Parsing never trusts a
 * length: a malformed message becomes ERR_JOINT_BAD_MESSAGE naming the peer.
 */
import type { PartyChannel } from '../../../crypto/channel.ts'
import { badMessage } from '../vertical/wire.ts'

export interface Message {
  header: Record<string, unknown>
  parts: Uint8Array[]
}

const MAX_PARTS = 1 << 20

export function encodeMessage(
  header: Record<string, unknown>,
  parts: readonly Uint8Array[] = [],
): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header))
  const size = 8 + h.length + parts.reduce((s, p) => s + 4 + p.byteLength, 0)
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  view.setUint32(0, h.length, true)
  out.set(h, 4)
  let at = 4 + h.length
  view.setUint32(at, parts.length, true)
  at += 4
  for (const p of parts) {
    view.setUint32(at, p.byteLength, true)
    out.set(p, at + 4)
    at += 4 + p.byteLength
  }
  return out
}

export function decodeMessage(from: string, tag: string, bytes: Uint8Array): Message {
  const bad = (why: string) => badMessage(from, tag, why)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length < 8) throw bad('too short')
  const hl = view.getUint32(0, true)
  if (4 + hl + 4 > bytes.length) throw bad('header length')
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(4, 4 + hl)))
  } catch {
    throw bad('header is not JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header')
  let at = 4 + hl
  const count = view.getUint32(at, true)
  at += 4
  if (count > MAX_PARTS) throw bad('too many parts')
  const parts: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    if (at + 4 > bytes.length) throw bad('truncated part')
    const len = view.getUint32(at, true)
    if (at + 4 + len > bytes.length) throw bad('part length')
    parts.push(bytes.subarray(at + 4, at + 4 + len))
    at += 4 + len
  }
  if (at !== bytes.length) throw bad('trailing bytes')
  return { header: header as Record<string, unknown>, parts }
}

export async function recvMessage(ch: PartyChannel, from: string, tag: string): Promise<Message> {
  return decodeMessage(from, tag, await ch.recv(from, tag))
}

export function u32Bytes(v: Uint32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
}

/** A received row list: strictly increasing indices below `limit`. */
export function readRows(from: string, tag: string, b: Uint8Array, limit: number): Uint32Array {
  if (b.byteLength % 4 !== 0) throw badMessage(from, tag, 'row list length')
  const rows = new Uint32Array(b.byteLength / 4)
  new Uint8Array(rows.buffer).set(b)
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] >= limit || (i > 0 && rows[i] <= rows[i - 1])) throw badMessage(from, tag, 'row list order')
  }
  return rows
}

/** Packs booleans (1 bit each, LSB first). */
export function packBits(bits: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bits.length / 8))
  for (let i = 0; i < bits.length; i++) if (bits[i]) out[i >> 3] |= 1 << (i & 7)
  return out
}

export function bitAt(packed: Uint8Array, i: number): boolean {
  return (packed[i >> 3] & (1 << (i & 7))) !== 0
}

export function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
}
