import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Uint8ArrayList } from 'uint8arraylist'
import { z } from 'zod'
import {
  type ChannelStats,
  channelClosedError,
  ERR_CHANNEL_CLOSED,
  ERR_UNKNOWN_PARTY,
  emptyStats,
  Mailbox,
  type PartyChannel,
} from '../crypto/channel.ts'
import { SyndicateError } from '../crypto/errors.ts'
import { decodeMessage, encodeMessage, type ProtocolLogger, withTimeout } from './define.ts'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'
import { readFrames, writeFrame } from './framing.ts'

/**
 * Session channels: the PartyChannel of a job over libp2p. Each party opens one outbound stream per peer for
 * the session and writes tagged messages on it, in order, waiting for drain when the muxer's buffer is full.
 * The first frame names the session and the sender; the receiver checks that the stream's authenticated peer
 * id is the one the session assigns to that name before delivering anything.
 *
 * Message frame payload: u16 tag length, tag (UTF-8), message bytes.
 */
export const SESSION_PROTOCOL = '/syndicate/session/1.0.0'

/**
 * A session stream may stay silent while a party computes (a tree's histograms, a batch of triples); the job's
 * deadline, not the stream, bounds how long a party may take.
 */
const SESSION_IDLE_MS = 24 * 3600_000

const HelloSchema = z.object({
  v: z.literal(1),
  session: z.string().min(1).max(200),
  from: z.string().min(1).max(64),
})

export interface SessionOptions {
  /** Largest single message (tag + payload); protocols chunk anything bigger. */
  maxMessageBytes?: number
  /** How long an inbound stream may wait for the local party to open the same session. */
  openWaitMs?: number
}

interface OpenSession {
  id: string
  self: string
  parties: Map<string, string>
  mailbox: Mailbox
  stats: ChannelStats
  outbound: Map<string, { stream: Promise<Stream>; tail: Promise<void> }>
  inbound: Set<Stream>
}

export class SessionService {
  private readonly sessions = new Map<string, OpenSession>()
  private readonly waiters = new Map<string, Array<() => void>>()
  private readonly taps = new Set<
    (m: { session: string; from: string; to: string; tag: string; payload: Uint8Array }) => void
  >()
  private readonly maxMessageBytes: number
  private readonly openWaitMs: number

  private readonly libp2p: Libp2p
  private readonly deps: { admit: (peer: PeerId) => boolean; log: ProtocolLogger }

  constructor(
    libp2p: Libp2p,
    deps: { admit: (peer: PeerId) => boolean; log: ProtocolLogger },
    opts: SessionOptions = {},
  ) {
    this.libp2p = libp2p
    this.deps = deps
    this.maxMessageBytes = opts.maxMessageBytes ?? 64 * 1024 * 1024
    this.openWaitMs = opts.openWaitMs ?? 60_000
  }

  async start(): Promise<void> {
    await this.libp2p.handle(SESSION_PROTOCOL, (stream, conn) => this.onInbound(stream, conn), {
      maxInboundStreams: 512,
      maxOutboundStreams: 512,
    })
    // A party whose connection is gone cannot continue any session: fail them now rather than at a deadline.
    this.libp2p.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString()
      for (const s of [...this.sessions.values()]) {
        const name = [...s.parties].find(([, id]) => id === peer)?.[0]
        if (name && name !== s.self) {
          this.close(
            s,
            new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, `party ${name} disconnected`, { party: name }),
          )
        }
      }
    })
  }

  /** Opens this party's end of session `id`. `parties` maps every party name (including `self`) to its peer id. */
  open(id: string, self: string, parties: Record<string, string>): PartyChannel {
    if (this.sessions.has(id)) {
      throw new SyndicateError('ERR_SESSION_EXISTS', `session ${id} is already open on this node`)
    }
    const map = new Map(Object.entries(parties))
    if (map.get(self) !== this.libp2p.peerId.toString()) {
      throw new SyndicateError('ERR_SESSION_SELF', `party ${self} of session ${id} is not this node`)
    }
    const session: OpenSession = {
      id,
      self,
      parties: map,
      mailbox: new Mailbox(),
      stats: emptyStats(),
      outbound: new Map(),
      inbound: new Set(),
    }
    this.sessions.set(id, session)
    for (const wake of this.waiters.get(id) ?? []) wake()
    this.waiters.delete(id)

    const names = [...map.keys()]
    return {
      self,
      parties: names,
      send: (to, tag, payload) => this.send(session, to, tag, payload),
      recv: (from, tag) => {
        if (!map.has(from) || from === self) {
          return Promise.reject(
            new SyndicateError(ERR_UNKNOWN_PARTY, `${self} cannot receive from unknown party ${from}`, {
              from,
            }),
          )
        }
        return session.mailbox.take(from, tag)
      },
      stats: () => ({ ...session.stats }),
      close: (reason) => this.close(session, reason),
    }
  }

  private async send(s: OpenSession, to: string, tag: string, payload: Uint8Array): Promise<void> {
    if (s.mailbox.closeReason) throw s.mailbox.closeReason
    const peer = s.parties.get(to)
    if (!peer || to === s.self)
      throw new SyndicateError(ERR_UNKNOWN_PARTY, `${s.self} cannot send to unknown party ${to}`, { to })
    const tagBytes = new TextEncoder().encode(tag)
    if (tagBytes.length > 0xffff || tagBytes.length + payload.byteLength + 2 > this.maxMessageBytes) {
      throw new ProtocolError(
        ProtocolErrorCode.MESSAGE_TOO_LARGE,
        `message ${tag} of ${payload.byteLength} bytes exceeds the session limit`,
      )
    }
    let out = s.outbound.get(to)
    if (!out) {
      const stream = this.dial(s, peer)
      out = { stream, tail: stream.then(() => undefined) }
      s.outbound.set(to, out)
    }
    const head = new Uint8Array(2 + tagBytes.length)
    new DataView(head.buffer).setUint16(0, tagBytes.length)
    head.set(tagBytes, 2)
    const message = new Uint8ArrayList(head, payload).subarray()
    const entry = out
    const write = entry.tail.then(async () => {
      const stream = await entry.stream
      await writeFrame(stream, message)
      s.stats.bytesSent += message.byteLength + 4
      s.stats.messagesSent++
      for (const tap of this.taps) tap({ session: s.id, from: s.self, to, tag, payload })
    })
    // The chain keeps going after a failure so later sends report their own error instead of hanging.
    entry.tail = write.catch(() => undefined)
    try {
      await write
    } catch (e) {
      const err = new ProtocolError(
        ProtocolErrorCode.STREAM_CLOSED,
        `sending ${tag} to ${to} failed: ${(e as Error).message}`,
        { to },
        { cause: e },
      )
      this.close(s, err)
      throw err
    }
  }

  private async dial(s: OpenSession, peer: string): Promise<Stream> {
    const stream = await this.libp2p.dialProtocol(peerIdFromString(peer), SESSION_PROTOCOL, {
      signal: AbortSignal.timeout(30_000),
      negotiateFully: false,
    })
    stream.inactivityTimeout = SESSION_IDLE_MS
    await writeFrame(stream, encodeMessage({ v: 1, session: s.id, from: s.self }))
    return stream
  }

  private async onInbound(stream: Stream, conn: Connection): Promise<void> {
    stream.inactivityTimeout = SESSION_IDLE_MS
    const remote = conn.remotePeer.toString()
    if (!this.deps.admit(conn.remotePeer)) {
      this.deps.log.warn(
        { peer: remote, protocol: SESSION_PROTOCOL },
        'refused session stream from non-member',
      )
      stream.abort(new ProtocolError(ProtocolErrorCode.NOT_MEMBER, 'not a consortium member'))
      return
    }
    const frames = readFrames(stream, this.maxMessageBytes)
    let session: OpenSession | undefined
    let from = ''
    try {
      const first = await withTimeout(frames.next(), 30_000, 'session hello')
      if (first.done) return
      const hello = decodeMessage(HelloSchema, first.value, 'session hello')
      session = await this.waitForSession(hello.session)
      from = hello.from
      if (session.parties.get(from) !== remote) {
        throw new ProtocolError(
          ProtocolErrorCode.INVALID_MESSAGE,
          `peer ${remote} is not party ${from} of session ${hello.session}`,
        )
      }
      session.inbound.add(stream)
      for await (const f of frames) {
        if (f.byteLength < 2)
          throw new ProtocolError(ProtocolErrorCode.INVALID_MESSAGE, 'session message without a tag')
        const tagLen = (f[0] << 8) | f[1]
        if (f.byteLength < 2 + tagLen)
          throw new ProtocolError(ProtocolErrorCode.INVALID_MESSAGE, 'session message tag overruns the frame')
        const tag = new TextDecoder('utf-8', { fatal: true }).decode(f.subarray(2, 2 + tagLen))
        session.stats.bytesReceived += f.byteLength + 4
        session.stats.messagesReceived++
        const body = new Uint8Array(f.byteLength - 2 - tagLen)
        body.set(f.subarray(2 + tagLen))
        session.mailbox.deliver(from, tag, body)
      }
      // The sender closed its end: it has nothing more to say in this session.
      session.mailbox.endSender(
        from,
        new SyndicateError(ERR_CHANNEL_CLOSED, `party ${from} left session ${session.id}`, { party: from }),
      )
    } catch (e) {
      const err = e as Error & { code?: string }
      this.deps.log.warn(
        { peer: remote, protocol: SESSION_PROTOCOL, session: session?.id, code: err.code, err: err.message },
        'session stream failed',
      )
      stream.abort(err)
      // A broken stream mid-session means that party can no longer take part: fail the session's receivers.
      if (session && !session.mailbox.closed) {
        this.close(
          session,
          new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, `party ${from} dropped: ${err.message}`, {
            party: from,
          }),
        )
      }
    } finally {
      session?.inbound.delete(stream)
      // Close our (unused) write side too: a stream is released only when both ends have closed, and
      // half-open streams would pile up against the per-connection stream limit.
      if (stream.status === 'open') stream.close().catch(() => undefined)
    }
  }

  private waitForSession(id: string): Promise<OpenSession> {
    const existing = this.sessions.get(id)
    if (existing) return Promise.resolve(existing)
    return withTimeout(
      new Promise<OpenSession>((resolve) => {
        const list = this.waiters.get(id) ?? []
        list.push(() => resolve(this.sessions.get(id)!))
        this.waiters.set(id, list)
      }),
      this.openWaitMs,
      `session ${id} was not opened locally`,
    )
  }

  private close(s: OpenSession, reason?: Error): void {
    if (this.sessions.get(s.id) !== s) return
    this.sessions.delete(s.id)
    s.mailbox.close(channelClosedError(s.self, reason))
    // Outbound streams end cleanly even on failure: the peers learn why from the job protocol, which names
    // the party at fault, rather than from a reset that would make this party look like the one that dropped.
    for (const { stream } of s.outbound.values()) {
      stream.then((st) => st.close()).catch(() => undefined)
    }
  }

  /**
   * Sees every message this node sends in any session (what leaves the process, before transport
   * encryption): for privacy audits that check no raw value leaves, and for traffic accounting.
   */
  tap(
    fn: (m: { session: string; from: string; to: string; tag: string; payload: Uint8Array }) => void,
  ): () => void {
    this.taps.add(fn)
    return () => this.taps.delete(fn)
  }

  /** Ids of open sessions (for status pages and tests). */
  openSessions(): string[] {
    return [...this.sessions.keys()]
  }
}
