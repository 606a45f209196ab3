import { getRandomValues } from 'node:crypto'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import type { PsiPool } from './pool.ts'

/**
 * Point streams over the party channel: a header (count, chunk size) under `TAG/n`, then chunks of up to
 * `chunk` fixed-width points under `TAG/0`, `TAG/1`, … Chunks are computed and sent as soon as they are ready,
 * so sending, the peer's multiplications and the return trip overlap.
 */
export interface StreamHeader {
  count: number
  chunk: number
}

export const ERR_PSI_BAD_MESSAGE = 'ERR_PSI_BAD_MESSAGE'
export const ERR_PSI_PARAMS = 'ERR_PSI_PARAMS'

/** Upper bound on a peer's announced set size (4 GB of points), so a bad header cannot exhaust memory. */
const MAX_COUNT = 128_000_000

export function badMessage(from: string, what: string): SyndicateError {
  return new SyndicateError(
    ERR_PSI_BAD_MESSAGE,
    `PSI peer ${from} sent a malformed message: ${what}; abort the job`,
    {
      party: from,
    },
  )
}

export function chunkCount(h: StreamHeader): number {
  return Math.ceil(h.count / h.chunk)
}

export function chunkItems(h: StreamHeader, c: number): number {
  return Math.min(h.chunk, h.count - c * h.chunk)
}

export function encodeHeader(h: StreamHeader): Uint8Array {
  const b = new Uint8Array(8)
  const v = new DataView(b.buffer)
  v.setUint32(0, h.count, true)
  v.setUint32(4, h.chunk, true)
  return b
}

export function decodeHeader(from: string, b: Uint8Array): StreamHeader {
  if (b.length !== 8) throw badMessage(from, `header of ${b.length} bytes`)
  const v = new DataView(b.buffer, b.byteOffset, 8)
  const h = { count: v.getUint32(0, true), chunk: v.getUint32(4, true) }
  if (h.count > MAX_COUNT || h.chunk === 0) throw badMessage(from, `header count=${h.count} chunk=${h.chunk}`)
  return h
}

/** Awaits every promise (no rejection left unhandled) and returns the values, or throws the first failure. */
export async function settleAll<T>(ps: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(ps)
  const bad = settled.find((s) => s.status === 'rejected')
  if (bad) throw (bad as PromiseRejectedResult).reason
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value)
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}

/** Sends `items` (already in send order) to `to`: H(item)·key in chunks. */
export async function sendHashed(
  ch: PartyChannel,
  pool: PsiPool,
  to: string,
  tag: string,
  key: Uint8Array,
  salt: Uint8Array,
  items: readonly string[],
  chunk: number,
): Promise<void> {
  const h = { count: items.length, chunk }
  await ch.send(to, `${tag}/n`, encodeHeader(h))
  const sends: Promise<void>[] = []
  for (let c = 0; c < chunkCount(h); c++) {
    const part = items.slice(c * chunk, (c + 1) * chunk)
    sends.push(pool.hashMul(key, salt, part).then((pts) => ch.send(to, `${tag}/${c}`, pts)))
  }
  await settleAll(sends)
}

/**
 * Receives a point stream from `from`, multiplies every point by `key` and keeps `outBytes` bytes of each
 * result; with `forward`, sends each result chunk on (header first) as soon as it is ready. Resolves with the
 * result chunks in order.
 */
export async function transformStream(
  ch: PartyChannel,
  pool: PsiPool,
  from: string,
  tag: string,
  key: Uint8Array,
  outBytes: number,
  forward?: { to: string; tag: string },
): Promise<{ header: StreamHeader; chunks: Uint8Array[] }> {
  const header = decodeHeader(from, await ch.recv(from, `${tag}/n`))
  if (forward) await ch.send(forward.to, `${forward.tag}/n`, encodeHeader(header))
  const results: Promise<Uint8Array>[] = []
  for (let c = 0; c < chunkCount(header); c++) {
    const msg = await ch.recv(from, `${tag}/${c}`)
    if (msg.length !== chunkItems(header, c) * 32) throw badMessage(from, `chunk ${c} of ${msg.length} bytes`)
    const r = pool.mul(key, msg, outBytes).catch((e: Error) => {
      throw badMessage(from, `chunk ${c}: ${e.message}`)
    })
    results.push(
      forward
        ? r.then(async (out) => {
            await ch.send(forward.to, `${forward.tag}/${c}`, out)
            return out
          })
        : r,
    )
  }
  return { header, chunks: await settleAll(results) }
}

/** Receives a stream of `width`-byte values whose header must be `expect` (when given). */
export async function recvStream(
  ch: PartyChannel,
  from: string,
  tag: string,
  width: number,
  expect?: StreamHeader,
): Promise<Uint8Array> {
  const header = decodeHeader(from, await ch.recv(from, `${tag}/n`))
  if (expect && (header.count !== expect.count || header.chunk !== expect.chunk)) {
    throw badMessage(from, `stream of ${header.count} items where ${expect.count} were expected`)
  }
  const parts: Uint8Array[] = []
  for (let c = 0; c < chunkCount(header); c++) {
    const msg = await ch.recv(from, `${tag}/${c}`)
    if (msg.length !== chunkItems(header, c) * width)
      throw badMessage(from, `chunk ${c} of ${msg.length} bytes`)
    parts.push(msg)
  }
  return concat(parts)
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates with rejection sampling, no modulo bias). */
export function randomPermutation(n: number): Uint32Array {
  const p = new Uint32Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  let pool = new Uint32Array(0)
  let k = 0
  const next = () => {
    if (k === pool.length) {
      pool = getRandomValues(new Uint32Array(4096))
      k = 0
    }
    return pool[k++]
  }
  for (let i = n - 1; i > 0; i--) {
    const m = i + 1
    const limit = 2 ** 32 - (2 ** 32 % m)
    let r = next()
    while (r >= limit) r = next()
    const j = r % m
    const t = p[i]
    p[i] = p[j]
    p[j] = t
  }
  return p
}

/** The values of a fixed-width array as binary strings (map keys that compare in byte order). */
export function keysOf(values: Uint8Array, width: number): string[] {
  const buf = Buffer.from(values.buffer, values.byteOffset, values.length)
  const out = new Array<string>(values.length / width)
  for (let i = 0; i < out.length; i++) out[i] = buf.toString('latin1', i * width, (i + 1) * width)
  return out
}
