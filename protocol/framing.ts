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
