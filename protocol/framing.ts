import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'

/**
 * Frames on every Syndicate stream: a 4-byte big-endian length, then that many bytes. The length is checked
 * against the protocol's bound before any payload is buffered, so an oversized announcement costs nothing.
 */
const HEADER = 4

export function frame(payload: Uint8Array): Uint8ArrayList {
  const header = new Uint8Array(HEADER)
  new DataView(header.buffer).setUint32(0, payload.byteLength)
  return new Uint8ArrayList(header, payload)
}

/** Writes one frame, waiting for the stream to drain when its send buffer is full (backpressure). */
export async function writeFrame(stream: Stream, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
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

/**
 * Writes JSON items to a long-lived stream, gathering the items queued during one turn of the event loop into
 * one frame that holds a JSON array: under load, many small messages then cost one muxer frame, one
 * encryption and one socket write between them; alone, an item waits only for the current turn to end.
 * Frames stay within `maxBytes`; writes are serialised and wait for the stream to drain.
 */
export class FrameBatcher {
  private readonly stream: Stream
  private readonly maxBytes: number
  private readonly onError: (e: Error) => void
  private queue: string[] = []
  private sizes: number[] = []
  private flushing: Promise<void> | undefined

  constructor(stream: Stream, maxBytes: number, onError: (e: Error) => void) {
    this.stream = stream
    this.maxBytes = maxBytes
    this.onError = onError
  }

  /** Queues one JSON text; false (and nothing queued) when it could not fit in a frame on its own. */
  push(json: string): boolean {
    const size = Buffer.byteLength(json)
    if (size + 2 > this.maxBytes) return false
    this.queue.push(json)
    this.sizes.push(size)
    this.flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush())
    return true
  }

  /** Resolves once everything queued so far is written (or the stream failed). */
  async drained(): Promise<void> {
    while (this.flushing) await this.flushing
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        let bytes = 2 + this.sizes[0]
        let n = 1
        while (n < this.queue.length && bytes + 1 + this.sizes[n] <= this.maxBytes)
          bytes += 1 + this.sizes[n++]
        const batch = this.queue.splice(0, n)
        this.sizes.splice(0, n)
        await writeFrame(this.stream, utf8.encode(`[${batch.join(',')}]`))
      }
    } catch (e) {
      this.queue = []
      this.sizes = []
      this.onError(e as Error)
    } finally {
      this.flushing = undefined
    }
  }
}
