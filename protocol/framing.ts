import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'

/**
 * Frames on every Syndicate stream: a 4-byte big-endian length, then that many bytes. The length is checked
 * against the protocol's bound before any payload is buffered, so an oversized announcement costs nothing.
 */
const HEADER = 4

export function frame(payload: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  const header = new Uint8Array(HEADER)
  new DataView(header.buffer).setUint32(0, payload.byteLength)
  return new Uint8ArrayList(header, payload)
}

/** Writes one frame, waiting for the stream to drain when its send buffer is full (backpressure). */
export async function writeFrame(
  stream: Stream,
  payload: Uint8Array | Uint8ArrayList,
  signal?: AbortSignal,
): Promise<void> {
  if (!stream.send(frame(payload))) await stream.onDrain({ signal })
}

/** Yields whole frames from `stream`; throws ERR_MESSAGE_TOO_LARGE as soon as a header exceeds `maxBytes`. */
export async function* readFrames(stream: AsyncIterable<Uint8Array | Uint8ArrayList>, maxBytes: number) {
  const buf = new Uint8ArrayList()
  for await (const chunk of stream) {
    buf.append(chunk)
    while (buf.byteLength >= HEADER) {
      const len = buf.getUint32(0)
      if (len > maxBytes) {
        throw new ProtocolError(
          ProtocolErrorCode.MESSAGE_TOO_LARGE,
          `frame of ${len} bytes exceeds the limit of ${maxBytes}`,
          { length: len, limit: maxBytes },
        )
      }
      if (buf.byteLength < HEADER + len) break
      const payload = buf.subarray(HEADER, HEADER + len)
      buf.consume(HEADER + len)
      yield payload
    }
  }
  if (buf.byteLength > 0) {
    throw new ProtocolError(
      ProtocolErrorCode.INVALID_MESSAGE,
      `stream ended inside a frame (${buf.byteLength} bytes left)`,
    )
  }
}

/** Reads exactly one frame, failing if the stream ends first. */
export async function readOneFrame(stream: Stream, maxBytes: number): Promise<Uint8Array> {
  for await (const f of readFrames(stream, maxBytes)) return f
  throw new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, 'stream closed before a message arrived')
}

const utf8 = new TextEncoder()

/** How the items of one frame are laid out: a JSON array of JSON texts, or records simply concatenated. */
export interface FrameLayout {
  open: Uint8Array
  separator: Uint8Array
  close: Uint8Array
}
export const JSON_ARRAY: FrameLayout = {
  open: utf8.encode('['),
  separator: utf8.encode(','),
  close: utf8.encode(']'),
}
export const CONCATENATED: FrameLayout = {
  open: new Uint8Array(0),
  separator: new Uint8Array(0),
  close: new Uint8Array(0),
}

/**
 * Items are gathered into one frame only up to this size: small messages share frames, while large ones go
 * out one per frame, so the receiver can take the first before the next has arrived.
 */
const GATHER_BYTES = 256 * 1024

interface Queued {
  bytes: Uint8Array
  settle?: (e?: Error) => void
}

/**
 * Writes items to a long-lived stream, gathering the items queued during one turn of the event loop into one
 * frame: under load, many small messages then cost one muxer frame, one encryption and one socket write
 * between them; alone, an item waits only for the current turn to end. Frames stay within `maxBytes`
 * (`layout` included), and gather items only up to GATHER_BYTES; writes are serialised and wait for the
 * stream to drain.
 */
export class FrameBatcher {
  private readonly stream: Stream
  private readonly maxBytes: number
  private readonly onError: (e: Error) => void
  private readonly layout: FrameLayout
  private readonly fixed: number
  private queue: Queued[] = []
  private flushing: Promise<void> | undefined

  constructor(
    stream: Stream,
    maxBytes: number,
    onError: (e: Error) => void,
    layout: FrameLayout = JSON_ARRAY,
  ) {
    this.stream = stream
    this.maxBytes = maxBytes
    this.onError = onError
    this.layout = layout
    this.fixed = layout.open.byteLength + layout.close.byteLength
  }

  /** Queues one JSON text (or encoded item); false (and nothing queued) when it could not fit in a frame alone. */
  push(item: string | Uint8Array): boolean {
    const bytes = typeof item === 'string' ? Buffer.from(item, 'utf8') : item
    if (bytes.byteLength + this.fixed > this.maxBytes) return false
    this.enqueue({ bytes })
    return true
  }

  /**
   * Queues `bytes` and resolves once the frame holding it is written; rejects with what failed the stream, or
   * at once when it could not fit in a frame alone.
   */
  write(bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength + this.fixed > this.maxBytes)
      return Promise.reject(
        new ProtocolError(
          ProtocolErrorCode.MESSAGE_TOO_LARGE,
          `an item of ${bytes.byteLength} bytes exceeds the frame limit of ${this.maxBytes}`,
        ),
      )
    return new Promise((resolve, reject) =>
      this.enqueue({ bytes, settle: (e) => (e ? reject(e) : resolve()) }),
    )
  }

  /** Resolves once everything queued so far is written (or the stream failed). */
  async drained(): Promise<void> {
    while (this.flushing) await this.flushing
  }

  private enqueue(q: Queued): void {
    this.queue.push(q)
    this.flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush())
  }

  private async flush(): Promise<void> {
    const { open, separator, close } = this.layout
    try {
      while (this.queue.length > 0) {
        let bytes = this.fixed + this.queue[0].bytes.byteLength
        let n = 1
        const limit = Math.min(this.maxBytes, GATHER_BYTES)
        while (
          n < this.queue.length &&
          bytes + separator.byteLength + this.queue[n].bytes.byteLength <= limit
        )
          bytes += separator.byteLength + this.queue[n++].bytes.byteLength
        const batch = this.queue.splice(0, n)
        // One contiguous buffer, header included: below, the encryption and the socket take a list of parts
        // one part at a time (a cipher update and a write system call each), which costs far more than a copy.
        const out = new Uint8Array(HEADER + bytes)
        new DataView(out.buffer).setUint32(0, bytes)
        let at = HEADER
        out.set(open, at)
        at += open.byteLength
        for (const [i, q] of batch.entries()) {
          if (i > 0) {
            out.set(separator, at)
            at += separator.byteLength
          }
          out.set(q.bytes, at)
          at += q.bytes.byteLength
        }
        out.set(close, at)
        try {
          if (!this.stream.send(out)) await this.stream.onDrain()
        } catch (e) {
          for (const q of batch) q.settle?.(e as Error)
          throw e
        }
        for (const q of batch) q.settle?.()
      }
    } catch (e) {
      const rest = this.queue
      this.queue = []
      for (const q of rest) q.settle?.(e as Error)
      this.onError(e as Error)
    } finally {
      this.flushing = undefined
    }
  }
}
