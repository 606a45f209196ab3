/**
 * Small messages of the vertical protocols: float vectors (little-endian float64) and JSON headers, each
 * checked on arrival so a malformed peer message becomes a SyndicateError naming the peer, never a crash.
 */
import type { PartyChannel } from '../../../crypto/channel.ts'
import { SyndicateError } from '../../../crypto/errors.ts'

export const ERR_JOINT_BAD_MESSAGE = 'ERR_JOINT_BAD_MESSAGE'

export function badMessage(from: string, tag: string, why: string): SyndicateError {
  return new SyndicateError(
    ERR_JOINT_BAD_MESSAGE,
    `party ${from} sent a malformed message under ${tag} (${why}); abort the job and check that every party runs the same version`,
    { from, tag },
  )
}

export function f64ToBytes(v: Float64Array): Uint8Array {
  return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength))
}

export async function recvF64(
  ch: PartyChannel,
  from: string,
  tag: string,
  length: number,
): Promise<Float64Array> {
  const bytes = await ch.recv(from, tag)
  if (bytes.byteLength !== 8 * length) {
    throw badMessage(from, tag, `${bytes.byteLength} bytes, expected ${8 * length}`)
  }
  const out = new Float64Array(length)
  new Uint8Array(out.buffer).set(bytes)
  for (const v of out) if (!Number.isFinite(v)) throw badMessage(from, tag, 'non-finite value')
  return out
}

export function jsonToBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

export async function recvJson(ch: PartyChannel, from: string, tag: string): Promise<unknown> {
  const bytes = await ch.recv(from, tag)
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw badMessage(from, tag, 'not JSON')
  }
}
