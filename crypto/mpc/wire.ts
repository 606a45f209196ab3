/** Ring vectors on the wire: little-endian 8-byte elements, length checked against what the protocol expects. */
import { SyndicateError } from '../errors.ts'
import type { Ring } from './ring.ts'

export const ERR_MPC_BAD_MESSAGE = 'ERR_MPC_BAD_MESSAGE'

export function ringToBytes(r: Ring): Uint8Array {
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength)
}

/** Copies (the payload need not be 8-byte aligned) after checking it holds exactly `length` elements. */
export function ringFromBytes(payload: Uint8Array, length: number, from: string, tag: string): Ring {
  if (payload.byteLength !== 8 * length) {
    throw new SyndicateError(
      ERR_MPC_BAD_MESSAGE,
      `party ${from} sent ${payload.byteLength} bytes under ${tag}, expected ${8 * length}; abort the job and check that both parties run the same protocol version`,
      { from, tag },
    )
  }
  const out = new BigUint64Array(length)
  new Uint8Array(out.buffer).set(payload)
  return out
}

/** Several byte strings in one message: a count, then each with its length (big-endian u32s). */
export function frame(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((s, p) => s + 4 + p.byteLength, 4)
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer)
  view.setUint32(0, parts.length)
  let at = 4
  for (const p of parts) {
    view.setUint32(at, p.byteLength)
    out.set(p, at + 4)
    at += 4 + p.byteLength
  }
  return out
}

/** The inverse of `frame`; malformed input throws `bad(from, id)`. */
export function unframe(
  buf: Uint8Array,
  from: string,
  id: string,
  bad: (from: string, id: string) => Error,
): Uint8Array[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  if (buf.byteLength < 4) throw bad(from, id)
  const count = view.getUint32(0)
  const out: Uint8Array[] = []
  let at = 4
  for (let i = 0; i < count; i++) {
    if (at + 4 > buf.byteLength) throw bad(from, id)
    const len = view.getUint32(at)
    if (at + 4 + len > buf.byteLength) throw bad(from, id)
    out.push(buf.subarray(at + 4, at + 4 + len))
    at += 4 + len
  }
  if (at !== buf.byteLength) throw bad(from, id)
  return out
}
