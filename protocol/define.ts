import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'
import { readOneFrame, writeFrame } from './framing.ts'

/**
 * A request/response protocol declared in one place: its id `/syndicate/<name>/<version>`, the schemas of both
 * messages and the largest message either side accepts. Messages are JSON in one frame each; they are
 * validated before any handler sees them.
 */
export interface ProtocolSpec<Req extends z.ZodType, Res extends z.ZodType> {
  id: string
  name: string
  version: string
  maxMessageBytes: number
  request: Req
  response: Res
  timeoutMs: number
  /** Concurrent streams of this protocol per connection, each way. */
  maxStreams: number
}

export function defineProtocol<Req extends z.ZodType, Res extends z.ZodType>(def: {
  name: string
  version: string
  maxMessageBytes: number
  request: Req
  response: Res
  timeoutMs?: number
  maxStreams?: number
}): ProtocolSpec<Req, Res> {
  return {
    ...def,
    id: `/syndicate/${def.name}/${def.version}`,
    timeoutMs: def.timeoutMs ?? 10_000,
    maxStreams: def.maxStreams ?? 64,
  }
}

/** What a response frame carries: the handler's result, or a typed error for the caller. */
type Envelope = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }

export function decodeMessage<T extends z.ZodType>(schema: T, bytes: Uint8Array, what: string): z.infer<T> {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (e) {
    throw new ProtocolError(ProtocolErrorCode.INVALID_MESSAGE, `${what} is not valid UTF-8 JSON`, undefined, {
      cause: e,
    })
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) {
    const first = parsed.error.issues[0]
    throw new ProtocolError(
      ProtocolErrorCode.INVALID_MESSAGE,
      `${what} is invalid at ${first?.path.join('.') || '(root)'}: ${first?.message}`,
    )
  }
  return parsed.data
}

export function encodeMessage(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

export interface HandlerContext {
  remotePeer: PeerId
  connection: Connection
}

export interface ProtocolLogger {
  warn(obj: object, msg: string): void
}

/**
 * Registers `handler` for `spec`. `admit` is checked again here (not only in the connection gater) so that a
 * stream from a peer removed after it connected never reaches the handler. Malformed or oversized requests
 * reset the stream and are logged with the peer; the node keeps serving.
 */
export async function handleProtocol<Req extends z.ZodType, Res extends z.ZodType>(
  libp2p: Libp2p,
  spec: ProtocolSpec<Req, Res>,
  handler: (req: z.infer<Req>, ctx: HandlerContext) => Promise<z.infer<Res>>,
  opts: { admit: (peer: PeerId) => boolean; log: ProtocolLogger },
): Promise<void> {
  await libp2p.handle(
    spec.id,
    async (stream: Stream, connection: Connection) => {
      const remotePeer = connection.remotePeer
      if (!opts.admit(remotePeer)) {
        opts.log.warn({ peer: remotePeer.toString(), protocol: spec.id }, 'refused stream from non-member')
        stream.abort(new ProtocolError(ProtocolErrorCode.NOT_MEMBER, 'not a consortium member'))
        return
      }
      let req: z.infer<Req>
      try {
        const bytes = await withTimeout(readOneFrame(stream, spec.maxMessageBytes), spec.timeoutMs, spec.id)
        req = decodeMessage(spec.request, bytes, `request on ${spec.id}`)
      } catch (e) {
        const err = e as Error & { code?: string }
        opts.log.warn(
          { peer: remotePeer.toString(), protocol: spec.id, code: err.code, err: err.message },
          'bad request',
        )
        stream.abort(err)
        return
      }
      let envelope: Envelope
      try {
        envelope = { ok: true, result: spec.response.parse(await handler(req, { remotePeer, connection })) }
      } catch (e) {
        const err = e as Error & { code?: string }
        envelope = { ok: false, error: { code: err.code ?? 'ERR_INTERNAL', message: err.message } }
      }
      try {
        await writeFrame(stream, encodeMessage(envelope))
        await stream.close()
      } catch (e) {
        opts.log.warn(
          { peer: remotePeer.toString(), protocol: spec.id, err: (e as Error).message },
          'reply failed',
        )
        stream.abort(e as Error)
      }
    },
    {
      runOnLimitedConnection: false,
      maxInboundStreams: spec.maxStreams,
      maxOutboundStreams: spec.maxStreams,
    },
  )
}

/** Sends one request and returns the validated response; remote errors are raised as ERR_REMOTE_ERROR. */
export async function requestProtocol<Req extends z.ZodType, Res extends z.ZodType>(
  libp2p: Libp2p,
  peer: PeerId,
  spec: ProtocolSpec<Req, Res>,
  req: z.input<Req>,
  options: { signal?: AbortSignal } = {},
): Promise<z.infer<Res>> {
  const body = encodeMessage(spec.request.parse(req))
  if (body.byteLength > spec.maxMessageBytes) {
    throw new ProtocolError(
      ProtocolErrorCode.MESSAGE_TOO_LARGE,
      `request of ${body.byteLength} bytes exceeds ${spec.maxMessageBytes}`,
    )
  }
  const signal = options.signal ?? AbortSignal.timeout(spec.timeoutMs)
  // Members run the same protocols, so the protocol choice is sent optimistically with the first frame
  // instead of costing a round trip per stream.
  const stream = await libp2p.dialProtocol(peer, spec.id, { signal, negotiateFully: false })
  try {
    await writeFrame(stream, body, signal)
    await stream.close({ signal })
    const bytes = await withTimeout(readOneFrame(stream, spec.maxMessageBytes), spec.timeoutMs, spec.id)
    const envelope = decodeMessage(envelopeSchemaOf(spec), bytes, `response on ${spec.id}`) as Envelope
    if (!envelope.ok) {
      throw new ProtocolError(
        ProtocolErrorCode.REMOTE_ERROR,
        `${peer} answered ${envelope.error.code}: ${envelope.error.message}`,
        {
          remoteCode: envelope.error.code,
        },
      )
    }
    return envelope.result as z.infer<Res>
  } catch (e) {
    stream.abort(e as Error)
    throw e
  }
}

const envelopeCache = new WeakMap<object, z.ZodType>()
function envelopeSchemaOf(spec: ProtocolSpec<z.ZodType, z.ZodType>): z.ZodType {
  let s = envelopeCache.get(spec)
  if (!s) {
    s = z.union([
      z.object({ ok: z.literal(true), result: spec.response }),
      z.object({
        ok: z.literal(false),
        error: z.object({ code: z.string().max(64), message: z.string().max(2000) }),
      }),
    ])
    envelopeCache.set(spec, s)
  }
  return s
}

export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ProtocolError(ProtocolErrorCode.TIMEOUT, `${what}: no message within ${ms} ms`)),
      ms,
    )
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
