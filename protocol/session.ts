import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
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
import type { ProtocolLogger } from './define.ts'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'
import { CONCATENATED, FrameBatcher, readFrames } from './framing.ts'

/**
 * Session channels: the PartyChannel of a job over libp2p. Every session between two nodes shares one
 * long-lived outbound stream per direction (2.0.0; 1.0.0 opened a stream per session and peer, which cost more
 * than a small job's whole exchange). Each record names its session and sending party; the receiver checks,
 * for every record, that the stream's authenticated peer id is the one the session assigns to that name.
 * Records queued during one turn of the event loop travel in one frame (protocol/framing.ts); a sender's
 * records of one session arrive in the order it sent them, and `send` resolves once its record is written,
 * waiting for the stream to drain when the muxer's buffer is full (backpressure).
 *
 * Record: u8 kind, u16 session length, session (UTF-8), u16 party length, party, u16 tag length, tag,
 * u32 payload length, payload. Kinds:
 * - DATA: a message `tag` from `party`;
 * - END: `party` closed its end of the session (it sends nothing more);
 * - RESET: the receiver refused the sender's records for the session (payload: the reason, UTF-8); the
 *   sender's session fails with it.
 * Records for a session not (yet) open here wait up to `openWaitMs` for it to open, within a byte bound;
 * then the sender gets a RESET.
 */
export const SESSION_PROTOCOL = '/syndicate/session/2.0.0'

/**
 * A session stream may stay silent while a party computes (a tree's histograms, a batch of triples); the job's
 * deadline, not the stream, bounds how long a party may take.
 */
const SESSION_IDLE_MS = 24 * 3600_000
const DATA = 0
const END = 1
const RESET = 2
const MAX_SESSION_BYTES = 200
const MAX_PARTY_BYTES = 64
/** Record header bytes besides the session, party and tag names. */
const FIXED_HEADER = 1 + 2 + 2 + 2 + 4
const HEADER_SLACK = FIXED_HEADER + MAX_SESSION_BYTES + MAX_PARTY_BYTES
/** Bytes an early record is counted for beyond its own (its entry, timer share and strings). */
const EARLY_RECORD_OVERHEAD = 1024
/** Sessions remembered as closed here, so their late records (a peer's END) are dropped, not held. */
const CLOSED_MEMORY = 10_000

export interface SessionOptions {
  /** Largest single message (tag + payload); protocols chunk anything bigger. */
  maxMessageBytes?: number
  /** How long records may wait for the local party to open their session. */
  openWaitMs?: number
  /** Bytes of records waiting for sessions not yet open here; above it, reading from peers pauses. */
  maxEarlyBytes?: number
}

interface OpenSession {
  id: string
  self: string
  parties: Map<string, string>
  mailbox: Mailbox
  stats: ChannelStats
}

interface SessionRecord {
  kind: number
  session: string
  party: string
  tag: string
  payload: Uint8Array
  /** Encoded size, header included (traffic counters). */
  size: number
}

/** Records of a session that is not open here yet, in arrival order, with the peer each came from. */
interface Early {
  records: Array<{ remote: string; record: SessionRecord }>
  bytes: number
  timer: NodeJS.Timeout
}

/** This node's outbound stream to one peer, shared by every session. */
interface Link {
  peer: string
  writer: Promise<FrameBatcher>
  stream?: Stream
  failed?: Error
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export class SessionService {
  private readonly sessions = new Map<string, OpenSession>()
  private readonly closed = new Set<string>()
  private readonly early = new Map<string, Early>()
  private earlyBytes = 0
  private readonly earlyFreed: Array<() => void> = []
  private readonly links = new Map<string, Link>()
  private readonly taps = new Set<
    (m: { session: string; from: string; to: string; tag: string; payload: Uint8Array }) => void
  >()
  private readonly maxMessageBytes: number
  private readonly openWaitMs: number
  private readonly maxEarlyBytes: number

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
    this.maxEarlyBytes = opts.maxEarlyBytes ?? 2 * this.maxMessageBytes
  }

  /** Largest frame: one whole message with its record header; smaller records share frames up to it. */
  private get maxFrameBytes(): number {
    return this.maxMessageBytes + HEADER_SLACK
  }

  async start(): Promise<void> {
    await this.libp2p.handle(SESSION_PROTOCOL, (stream, conn) => this.onInbound(stream, conn), {
      // One stream each way per peer; a few more for a reconnect racing the old stream's teardown.
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
    })
    // A party whose connection is gone cannot continue any session: fail them now rather than at a deadline.
    this.libp2p.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString()
      this.dropLink(peer)
      this.failPeer(peer, (name) => `party ${name} disconnected`)
    })
  }

  /** Opens this party's end of session `id`. `parties` maps every party name (including `self`) to its peer id. */
  open(id: string, self: string, parties: Record<string, string>): PartyChannel {
    if (this.sessions.has(id)) {
      throw new SyndicateError('ERR_SESSION_EXISTS', `session ${id} is already open on this node`)
    }
    if (Buffer.byteLength(id, 'utf8') > MAX_SESSION_BYTES || id.length === 0)
      throw new SyndicateError('ERR_INVALID_REQUEST', `a session id is 1-${MAX_SESSION_BYTES} bytes`)
    const map = new Map(Object.entries(parties))
    if (map.get(self) !== this.libp2p.peerId.toString()) {
      throw new SyndicateError('ERR_SESSION_SELF', `party ${self} of session ${id} is not this node`)
    }
    for (const name of map.keys())
      if (Buffer.byteLength(name, 'utf8') > MAX_PARTY_BYTES || name.length === 0)
        throw new SyndicateError('ERR_INVALID_REQUEST', `a party name is 1-${MAX_PARTY_BYTES} bytes: ${name}`)
    const session: OpenSession = { id, self, parties: map, mailbox: new Mailbox(), stats: emptyStats() }
    this.sessions.set(id, session)
    this.closed.delete(id)
    // Records that arrived before the session opened here, in their order.
    const early = this.early.get(id)
    if (early) {
      this.early.delete(id)
      clearTimeout(early.timer)
      this.releaseEarly(early.bytes)
      for (const { remote, record } of early.records) this.apply(session, remote, record)
    }

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
    const tagBytes = Buffer.from(tag, 'utf8')
    if (tagBytes.length > 0xffff || tagBytes.length + payload.byteLength + 2 > this.maxMessageBytes) {
      throw new ProtocolError(
        ProtocolErrorCode.MESSAGE_TOO_LARGE,
        `message ${tag} of ${payload.byteLength} bytes exceeds the session limit`,
      )
    }
    // Encoded (and so copied) now: the caller may reuse `payload` once this returns a promise.
    const record = encodeRecord(DATA, s.id, s.self, tagBytes, payload)
    try {
      await this.write(peer, record)
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
    s.stats.bytesSent += record.byteLength
    s.stats.messagesSent++
    for (const tap of this.taps) tap({ session: s.id, from: s.self, to, tag, payload })
  }

  /** Writes `record` on the stream to `peer` (opened on first use); resolves once it is written. */
  private async write(peer: string, record: Uint8Array): Promise<void> {
    let link = this.links.get(peer)
    if (!link) {
      const created = { peer } as Link
      created.writer = this.dial(created)
      // A failed dial is reported to each write; this copy only keeps it from being an unhandled rejection.
      created.writer.catch(() => undefined)
      this.links.set(peer, created)
      link = created
    }
    const writer = await link.writer
    if (link.failed) throw link.failed
    await writer.write(record)
  }

  private async dial(link: Link): Promise<FrameBatcher> {
    try {
      const stream = await this.libp2p.dialProtocol(peerIdFromString(link.peer), SESSION_PROTOCOL, {
        signal: AbortSignal.timeout(30_000),
        negotiateFully: false,
      })
      stream.inactivityTimeout = SESSION_IDLE_MS
      link.stream = stream
      // Nothing comes back on this stream; its end (or reset) tells that the peer is gone.
      void this.watch(link, stream)
      return new FrameBatcher(stream, this.maxFrameBytes, (e) => this.failLink(link, e), CONCATENATED)
    } catch (e) {
      this.failLink(link, e as Error)
      throw e
    }
  }

  private async watch(link: Link, stream: Stream): Promise<void> {
    try {
      for await (const _ of stream) {
        // The peer writes nothing here.
      }
      // The peer ended the stream (it stops reading): the next write opens a new one.
      if (this.links.get(link.peer) === link) this.links.delete(link.peer)
    } catch (e) {
      this.failLink(link, e as Error)
    }
  }

  /**
   * The stream to a peer failed: records written on it may be lost, so every open session with that party
   * fails (as when its connection drops) rather than carry on with a gap. The next send opens a new stream.
   */
  private failLink(link: Link, e: Error): void {
    if (link.failed) return
    link.failed = e
    if (this.links.get(link.peer) === link) this.links.delete(link.peer)
    link.stream?.abort(e)
    this.failPeer(link.peer, (name) => `the stream to party ${name} failed: ${e.message}`)
  }

  private dropLink(peer: string): void {
    const link = this.links.get(peer)
    if (!link) return
    this.links.delete(peer)
    link.failed ??= new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, `peer ${peer} disconnected`)
  }

  /** Fails every open session that has `peer` as another party. */
  private failPeer(peer: string, why: (name: string) => string): void {
    for (const s of [...this.sessions.values()]) {
      const name = partyOf(s, peer)
      if (name) this.close(s, new ProtocolError(ProtocolErrorCode.STREAM_CLOSED, why(name), { party: name }))
    }
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
    try {
      for await (const f of readFrames(stream, this.maxFrameBytes)) {
        // Checked per frame: a member removed since the stream opened is cut off at once.
        if (!this.deps.admit(conn.remotePeer))
          throw new ProtocolError(ProtocolErrorCode.NOT_MEMBER, 'not a consortium member')
        for (const record of decodeRecords(f, this.maxMessageBytes)) this.onRecord(remote, record)
        // Back-pressure on a peer whose records wait for sessions not open here.
        while (this.earlyBytes > this.maxEarlyBytes) await new Promise<void>((r) => this.earlyFreed.push(r))
      }
      // The peer closed its stream (it is stopping): it sends nothing more in any session.
      for (const s of [...this.sessions.values()]) {
        const name = partyOf(s, remote)
        if (name)
          s.mailbox.endSender(
            name,
            new SyndicateError(ERR_CHANNEL_CLOSED, `party ${name} left session ${s.id}`, { party: name }),
          )
      }
    } catch (e) {
      const err = e as Error & { code?: string }
      this.deps.log.warn(
        { peer: remote, protocol: SESSION_PROTOCOL, code: err.code, err: err.message },
        'session stream failed',
      )
      stream.abort(err)
      // A broken stream means that peer can no longer take part in any session: fail their receivers.
      this.failPeer(remote, (name) => `party ${name} dropped: ${err.message}`)
    } finally {
      // Close our (unused) write side too: a stream is released only when both ends have closed.
      if (stream.status === 'open') stream.close().catch(() => undefined)
    }
  }

  private onRecord(remote: string, record: SessionRecord): void {
    const s = this.sessions.get(record.session)
    if (s) {
      this.apply(s, remote, record)
      return
    }
    // Late records of a session that ended here (a peer's END crossing ours) need nothing.
    if (this.closed.has(record.session)) return
    let early = this.early.get(record.session)
    if (!early) {
      const id = record.session
      const timer = setTimeout(() => this.expireEarly(id), this.openWaitMs)
      timer.unref()
      early = { records: [], bytes: 0, timer }
      this.early.set(id, early)
    }
    early.records.push({ remote, record })
    // Counted with an allowance for the bookkeeping, so a flood of tiny records is bounded too.
    const bytes = record.size + EARLY_RECORD_OVERHEAD
    early.bytes += bytes
    this.earlyBytes += bytes
  }

  /** Records that waited too long for their session: dropped, and their senders told. */
  private expireEarly(id: string): void {
    const early = this.early.get(id)
    if (!early) return
    this.early.delete(id)
    this.releaseEarly(early.bytes)
    const senders = new Set(early.records.filter((r) => r.record.kind === DATA).map((r) => r.remote))
    for (const peer of senders)
      this.reset(peer, id, `session ${id} was not opened within ${this.openWaitMs} ms`)
  }

  private releaseEarly(bytes: number): void {
    this.earlyBytes -= bytes
    if (this.earlyBytes <= this.maxEarlyBytes) for (const wake of this.earlyFreed.splice(0)) wake()
  }

  private apply(s: OpenSession, remote: string, r: SessionRecord): void {
    if (r.kind === RESET) {
      const name = partyOf(s, remote)
      // Never answered with a RESET, so two nodes cannot bounce refusals back and forth.
      if (!name) {
        this.warn(remote, s.id, `peer ${remote} is not a party of session ${s.id}`)
        return
      }
      const reason = strictUtf8.decode(r.payload)
      this.close(
        s,
        new ProtocolError(
          ProtocolErrorCode.STREAM_CLOSED,
          `party ${name} refused session ${s.id}: ${reason}`,
          {
            party: name,
          },
        ),
      )
      return
    }
    if (r.party === s.self || s.parties.get(r.party) !== remote) {
      this.refuse(remote, s.id, `peer ${remote} is not party ${r.party} of session ${s.id}`)
      return
    }
    if (r.kind === END) {
      s.mailbox.endSender(
        r.party,
        new SyndicateError(ERR_CHANNEL_CLOSED, `party ${r.party} left session ${s.id}`, { party: r.party }),
      )
      return
    }
    s.stats.bytesReceived += r.size
    s.stats.messagesReceived++
    s.mailbox.deliver(r.party, r.tag, r.payload)
  }

  /** A record from a peer that is not the party it claims: logged and refused; the session carries on. */
  private refuse(remote: string, session: string, why: string): void {
    this.warn(remote, session, why)
    this.reset(remote, session, why)
  }

  private warn(remote: string, session: string, why: string): void {
    this.deps.log.warn(
      { peer: remote, protocol: SESSION_PROTOCOL, session, err: why },
      'session record refused',
    )
  }

  private reset(peer: string, session: string, reason: string): void {
    const self = this.sessions.get(session)?.self ?? ''
    this.write(
      peer,
      encodeRecord(RESET, session, self, new Uint8Array(0), Buffer.from(reason.slice(0, 1000), 'utf8')),
    ).catch(() => undefined)
  }

  private close(s: OpenSession, reason?: Error): void {
    if (this.sessions.get(s.id) !== s) return
    this.sessions.delete(s.id)
    this.closed.add(s.id)
    if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value as string)
    s.mailbox.close(channelClosedError(s.self, reason))
    // The session ends cleanly towards each peer it has a stream to, even on failure: the peers learn why from
    // the job protocol, which names the party at fault, rather than from a reset that would make this party
    // look like the one that dropped.
    for (const [name, peer] of s.parties) {
      const link = this.links.get(peer)
      if (name === s.self || !link || link.failed) continue
      this.write(peer, encodeRecord(END, s.id, s.self, new Uint8Array(0), new Uint8Array(0))).catch(
        () => undefined,
      )
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

function partyOf(s: OpenSession, peer: string): string | undefined {
  for (const [name, id] of s.parties) if (id === peer && name !== s.self) return name
  return undefined
}

export function encodeRecord(
  kind: number,
  session: string,
  party: string,
  tag: Uint8Array,
  payload: Uint8Array,
): Uint8Array {
  const sessionBytes = Buffer.from(session, 'utf8')
  const partyBytes = Buffer.from(party, 'utf8')
  const out = new Uint8Array(
    FIXED_HEADER + sessionBytes.byteLength + partyBytes.byteLength + tag.byteLength + payload.byteLength,
  )
  const view = new DataView(out.buffer)
  let at = 0
  out[at++] = kind
  for (const part of [sessionBytes, partyBytes, tag]) {
    view.setUint16(at, part.byteLength)
    out.set(part, at + 2)
    at += 2 + part.byteLength
  }
  view.setUint32(at, payload.byteLength)
  out.set(payload, at + 4)
  return out
}

/** The records of one frame; throws ERR_INVALID_MESSAGE on anything malformed or over the bounds. */
export function decodeRecords(f: Uint8Array, maxMessageBytes: number): SessionRecord[] {
  const view = new DataView(f.buffer, f.byteOffset, f.byteLength)
  const out: SessionRecord[] = []
  let at = 0
  const bad = (why: string) => new ProtocolError(ProtocolErrorCode.INVALID_MESSAGE, `session record ${why}`)
  const text = (max: number, what: string): string => {
    if (at + 2 > f.byteLength) throw bad(`ends inside its ${what} length`)
    const n = view.getUint16(at)
    if (n > max || at + 2 + n > f.byteLength)
      throw bad(`${what} of ${n} bytes is too long or overruns the frame`)
    const from = at + 2
    at = from + n
    try {
      return strictUtf8.decode(f.subarray(from, at))
    } catch {
      throw bad(`${what} is not UTF-8`)
    }
  }
  while (at < f.byteLength) {
    const start = at
    const kind = f[at++]
    if (kind !== DATA && kind !== END && kind !== RESET) throw bad(`of unknown kind ${kind}`)
    const session = text(MAX_SESSION_BYTES, 'session')
    const party = text(MAX_PARTY_BYTES, 'party')
    const tagStart = at
    const tag = text(0xffff, 'tag')
    const tagBytes = at - tagStart - 2
    if (at + 4 > f.byteLength) throw bad('ends inside its payload length')
    const n = view.getUint32(at)
    at += 4
    if (at + n > f.byteLength) throw bad('payload overruns the frame')
    if (kind === DATA && tagBytes + n + 2 > maxMessageBytes)
      throw new ProtocolError(ProtocolErrorCode.MESSAGE_TOO_LARGE, `session message ${tag} exceeds the limit`)
    if (session.length === 0) throw bad('without a session')
    // A copy, not a view (a Buffer's slice is one): the frame's memory is not kept alive by one message.
    const payload = new Uint8Array(n)
    payload.set(f.subarray(at, at + n))
    at += n
    out.push({ kind, session, party, tag, payload, size: at - start })
  }
  return out
}
