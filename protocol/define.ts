import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { z } from 'zod'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'
import { FrameBatcher, readFrames, readOneFrame, writeFrame } from './framing.ts'

/**
 * A request/response protocol declared in one place: its id `/syndicate/<name>/<version>`, the schemas of both
 * messages and the largest message either side accepts. Messages are JSON in one frame each (a multiplexed
 * protocol: arrays of them, see below); they are validated before any handler sees them.
 */
export interface ProtocolSpec<Req extends z.ZodType, Res extends z.ZodType> {
  id: string
  name: string
  version: string
  maxMessageBytes: number
  request: Req
  response: Res
  timeoutMs: number
  /** Concurrent streams of this protocol per connection, each way (multiplexed: requests in flight per stream). */
  maxStreams: number
  /**
   * Requests share one long-lived stream per peer, many in flight at once, instead of a stream each. For chatty
   * protocols: opening a stream costs several times more than a small request on an open one.
   */
  multiplexed: boolean
  /**
   * Whether `requestProtocol` validates a request against the schema before sending it (the receiver always
   * does). Off for protocols whose requests are built only from values already validated, where the second
   * parse would cost more than the whole send.
   */
  checkOutgoing: boolean
}

export function defineProtocol<Req extends z.ZodType, Res extends z.ZodType>(def: {
  name: string
  version: string
  maxMessageBytes: number
  request: Req
  response: Res
  timeoutMs?: number
  maxStreams?: number
  multiplexed?: boolean
  checkOutgoing?: boolean
}): ProtocolSpec<Req, Res> {
  return {
    ...def,
    id: `/syndicate/${def.name}/${def.version}`,
    timeoutMs: def.timeoutMs ?? 10_000,
    maxStreams: def.maxStreams ?? 64,
    multiplexed: def.multiplexed ?? false,
    checkOutgoing: def.checkOutgoing ?? true,
  }
}

/** What a response frame carries: the handler's result, or a typed error for the caller. */
type Envelope = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export function decodeMessage<T extends z.ZodType>(schema: T, bytes: Uint8Array, what: string): z.infer<T> {
  let json: unknown
  try {
    json = JSON.parse(strictUtf8.decode(bytes))
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
  return Buffer.from(JSON.stringify(value), 'utf8')
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
  if (spec.multiplexed) {
    await libp2p.handle(
      spec.id,
      (stream: Stream, connection: Connection) => serveMultiplexed(stream, connection, spec, handler, opts),
      { runOnLimitedConnection: false, maxInboundStreams: 4, maxOutboundStreams: 4 },
    )
    return
  }
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
  const body = encodeMessage(spec.checkOutgoing ? spec.request.parse(req) : req)
  if (body.byteLength > spec.maxMessageBytes) {
    throw new ProtocolError(
      ProtocolErrorCode.MESSAGE_TOO_LARGE,
      `request of ${body.byteLength} bytes exceeds ${spec.maxMessageBytes}`,
    )
  }
  if (spec.multiplexed)
    return (await multiplexedClient(libp2p, peer, spec).request(body, options.signal)) as z.infer<Res>
  const signal = options.signal ?? AbortSignal.timeout(spec.timeoutMs)
  // Members run the same protocols, so the protocol choice is sent optimistically with the first frame
  // instead of costing a round trip per stream.
  const stream = await libp2p.dialProtocol(peer, spec.id, { signal, negotiateFully: false })
  try {
    await writeFrame(stream, body, signal)
    await stream.close({ signal })
    const bytes = await withTimeout(readOneFrame(stream, spec.maxMessageBytes), spec.timeoutMs, spec.id)
    return openEnvelope(
      decodeMessage(envelopeSchemaOf(spec), bytes, `response on ${spec.id}`) as Envelope,
      peer,
    ) as z.infer<Res>
  } catch (e) {
    stream.abort(e as Error)
    throw e
  }
}

function openEnvelope(envelope: Envelope, peer: PeerId): unknown {
  if (!envelope.ok) {
    throw new ProtocolError(
      ProtocolErrorCode.REMOTE_ERROR,
      `${peer} answered ${envelope.error.code}: ${envelope.error.message}`,
      { remoteCode: envelope.error.code },
    )
  }
  return envelope.result
}

function errorEnvelope(e: unknown): Envelope {
  const err = e as Error & { code?: string }
  return {
    ok: false,
    error: {
      code: String(err.code ?? 'ERR_INTERNAL').slice(0, 64),
      message: String(err.message).slice(0, 2000),
    },
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

/*
 * Multiplexed protocols. Each side of a peer pair opens at most one stream per protocol and sends its requests
 * on it; every frame holds a JSON array (protocol/framing.ts FrameBatcher):
 *   request frames   [{"id": n, "req": <request>}, ...]
 *   response frames  [{"id": n, "ok": true, "result": <response>} | {"id": n, "ok": false, "error": {...}}, ...]
 * Requests are handled concurrently and answered in any order. A frame that is not such an array resets the
 * stream (the caller's pending requests fail and are retried by whoever sent them); a request that does not
 * match the schema is answered with ERR_INVALID_MESSAGE and the stream carries on.
 */
const MuxRequestSchema = z.array(z.object({ id: z.number().int().nonnegative(), req: z.unknown() }))
const MuxResponseSchema = z.array(z.object({ id: z.number().int().nonnegative() }).loose())

async function serveMultiplexed<Req extends z.ZodType, Res extends z.ZodType>(
  stream: Stream,
  connection: Connection,
  spec: ProtocolSpec<Req, Res>,
  handler: (req: z.infer<Req>, ctx: HandlerContext) => Promise<z.infer<Res>>,
  opts: { admit: (peer: PeerId) => boolean; log: ProtocolLogger },
): Promise<void> {
  const remotePeer = connection.remotePeer
  const peer = remotePeer.toString()
  const writer = new FrameBatcher(stream, spec.maxMessageBytes, (e) => stream.abort(e))
  const reply = (id: number, envelope: Envelope) => {
    if (!writer.push(JSON.stringify({ id, ...envelope }))) {
      const tooLarge = new ProtocolError(
        ProtocolErrorCode.MESSAGE_TOO_LARGE,
        'the response exceeds the limit',
      )
      writer.push(JSON.stringify({ id, ...errorEnvelope(tooLarge) }))
    }
  }
  const inflight = new Set<Promise<void>>()
  try {
    for await (const frame of readFrames(stream, spec.maxMessageBytes)) {
      // Checked per frame, not only when the stream opened: a member removed since is cut off at once.
      if (!opts.admit(remotePeer)) {
        opts.log.warn({ peer, protocol: spec.id }, 'refused stream from non-member')
        stream.abort(new ProtocolError(ProtocolErrorCode.NOT_MEMBER, 'not a consortium member'))
        return
      }
      for (const { id, req } of decodeMessage(MuxRequestSchema, frame, `request frame on ${spec.id}`)) {
        // Back-pressure on a peer that floods: no more than maxStreams requests in flight per stream.
        while (inflight.size >= spec.maxStreams) await Promise.race(inflight)
        const parsed = spec.request.safeParse(req)
        if (!parsed.success) {
          const first = parsed.error.issues[0]
          const err = new ProtocolError(
            ProtocolErrorCode.INVALID_MESSAGE,
            `request on ${spec.id} is invalid at ${first?.path.join('.') || '(root)'}: ${first?.message}`,
          )
          opts.log.warn({ peer, protocol: spec.id, code: err.code, err: err.message }, 'bad request')
          reply(id, errorEnvelope(err))
          continue
        }
        const done: Promise<void> = Promise.resolve()
          .then(() => handler(parsed.data, { remotePeer, connection }))
          .then((result): Envelope => ({ ok: true, result: spec.response.parse(result) }))
          .catch(errorEnvelope)
          .then((envelope) => reply(id, envelope))
          .finally(() => inflight.delete(done))
        inflight.add(done)
      }
    }
  } catch (e) {
    const err = e as Error & { code?: string }
    // A malformed frame is the peer's fault; a reset or dropped connection (a peer restarting) is not.
    if (err instanceof ProtocolError)
      opts.log.warn({ peer, protocol: spec.id, code: err.code, err: err.message }, 'bad request')
    stream.abort(err)
    return
  }
  // The caller closed its side: answer what is in flight, then close ours.
  await Promise.allSettled(inflight)
  await writer.drained()
  await stream.close().catch((e: Error) => stream.abort(e))
}

const CLOSE_BRACE = Buffer.from('}')

interface Pending {
  resolve(value: unknown): void
  reject(e: Error): void
}

/** One caller-side stream of a multiplexed protocol to one peer, opened on first use and dropped when it fails. */
class MultiplexedClient {
  private readonly spec: ProtocolSpec<z.ZodType, z.ZodType>
  private readonly peer: PeerId
  private readonly forget: () => void
  private readonly pending = new Map<number, Pending>()
  private readonly ready: Promise<FrameBatcher>
  private stream: Stream | undefined
  private nextId = 0
  private failure: Error | undefined

  constructor(libp2p: Libp2p, peer: PeerId, spec: ProtocolSpec<z.ZodType, z.ZodType>, forget: () => void) {
    this.spec = spec
    this.peer = peer
    this.forget = forget
    this.ready = this.open(libp2p)
    // A failed open is reported to each request; this copy only keeps it from being an unhandled rejection.
    this.ready.catch(() => undefined)
  }

  async request(body: Uint8Array, signal?: AbortSignal): Promise<unknown> {
    const writer = await this.ready
    if (this.failure) throw this.failure
    signal?.throwIfAborted()
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const settle = () => {
        this.pending.delete(id)
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const timer = setTimeout(() => {
        settle()
        reject(
          new ProtocolError(
            ProtocolErrorCode.TIMEOUT,
            `${this.spec.id}: no answer within ${this.spec.timeoutMs} ms`,
          ),
        )
      }, this.spec.timeoutMs)
      const onAbort = () => {
        settle()
        reject(signal?.reason as Error)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        resolve: (v) => {
          settle()
          resolve(v)
        },
        reject: (e) => {
          settle()
          reject(e)
        },
      })
      // The request was encoded by the caller; its bytes are spliced in rather than decoded and encoded again.
      if (!writer.push(Buffer.concat([Buffer.from(`{"id":${id},"req":`), body, CLOSE_BRACE]))) {
        this.pending
          .get(id)
          ?.reject(
            new ProtocolError(
              ProtocolErrorCode.MESSAGE_TOO_LARGE,
              `request exceeds ${this.spec.maxMessageBytes} bytes`,
            ),
          )
      }
    })
  }

  private async open(libp2p: Libp2p): Promise<FrameBatcher> {
    try {
      // Optimistic protocol selection, as for one-shot requests: members run the same protocols.
      const stream = await libp2p.dialProtocol(this.peer, this.spec.id, {
        signal: AbortSignal.timeout(this.spec.timeoutMs),
        negotiateFully: false,
      })
      this.stream = stream
      void this.read(stream)
      return new FrameBatcher(stream, this.spec.maxMessageBytes, (e) => this.fail(e))
    } catch (e) {
      this.fail(e as Error)
      throw e
    }
  }

  private async read(stream: Stream): Promise<void> {
    const envelope = envelopeSchemaOf(this.spec)
    try {
      for await (const frame of readFrames(stream, this.spec.maxMessageBytes)) {
        for (const item of decodeMessage(MuxResponseSchema, frame, `response frame on ${this.spec.id}`)) {
          const p = this.pending.get(item.id)
          if (!p) continue // answered after its timeout
          const parsed = envelope.safeParse(item)
          if (!parsed.success) {
            p.reject(
              new ProtocolError(ProtocolErrorCode.INVALID_MESSAGE, `response on ${this.spec.id} is invalid`),
            )
            continue
          }
          try {
            p.resolve(openEnvelope(parsed.data as Envelope, this.peer))
          } catch (e) {
            p.reject(e as Error)
          }
        }
      }
      this.fail(
        new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, `${this.peer} closed the ${this.spec.id} stream`),
      )
    } catch (e) {
      this.fail(e as Error)
    }
  }

  private fail(e: Error): void {
    if (this.failure) return
    this.failure = e
    this.forget()
    this.stream?.abort(e)
    for (const p of [...this.pending.values()]) p.reject(e)
  }
}

const clients = new WeakMap<Libp2p, Map<string, MultiplexedClient>>()

function multiplexedClient(
  libp2p: Libp2p,
  peer: PeerId,
  spec: ProtocolSpec<z.ZodType, z.ZodType>,
): MultiplexedClient {
  let byKey = clients.get(libp2p)
  if (!byKey) {
    byKey = new Map()
    clients.set(libp2p, byKey)
  }
  const key = `${spec.id} ${peer}`
  let client = byKey.get(key)
  if (!client) {
    const map = byKey
    const created: MultiplexedClient = new MultiplexedClient(libp2p, peer, spec, () => {
      if (map.get(key) === created) map.delete(key)
    })
    client = created
    byKey.set(key, client)
  }
  return client
}
