import { SyndicateError } from './errors.ts'

/**
 * The party channel: how a joint protocol talks to the other parties of its job. Messages are tagged byte
 * strings; `recv(from, tag)` resolves with the message `from` sent under `tag`, whichever arrives first, so
 * protocols never depend on arrival order across tags. The same interface is implemented in memory (unit
 * tests, single-process simulation) and over libp2p streams (`protocol/`), so the protocol code is one path.
 *
 * A tag must be used once per (sender, receiver) pair within a channel; protocols derive tags from their step
 * names and round numbers (e.g. `lr/epoch3/batch7/grad`).
 */
export interface PartyChannel {
  /** This party's name, one of `parties`. */
  readonly self: string
  /** Every party of the job in the agreed order (the same on every party). */
  readonly parties: readonly string[]
  send(to: string, tag: string, payload: Uint8Array): Promise<void>
  recv(from: string, tag: string): Promise<Uint8Array>
  /** Traffic counters for this party (what it sent and received), for reports and benchmarks. */
  stats(): ChannelStats
  /** Fails every pending and future `recv` with `reason`; used when the job is cancelled or a party drops. */
  close(reason?: Error): void
}

export interface ChannelStats {
  bytesSent: number
  bytesReceived: number
  messagesSent: number
  messagesReceived: number
}

export const ERR_CHANNEL_CLOSED = 'ERR_CHANNEL_CLOSED'
export const ERR_UNKNOWN_PARTY = 'ERR_UNKNOWN_PARTY'

export function emptyStats(): ChannelStats {
  return { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 }
}

/**
 * Matches incoming messages with waiting receivers by (from, tag). Transport implementations deliver into it;
 * `recv` waits on it. Shared by the in-memory and libp2p channels.
 */
export class Mailbox {
  private readonly ready = new Map<string, Uint8Array>()
  private readonly waiting = new Map<
    string,
    { resolve: (m: Uint8Array) => void; reject: (e: Error) => void }
  >()
  private closedWith: Error | undefined
  private readonly ended = new Map<string, Error>()

  deliver(from: string, tag: string, payload: Uint8Array): void {
    if (this.closedWith) return
    const key = mailboxKey(from, tag)
    const waiter = this.waiting.get(key)
    if (waiter) {
      this.waiting.delete(key)
      waiter.resolve(payload)
    } else {
      this.ready.set(key, payload)
    }
  }

  take(from: string, tag: string): Promise<Uint8Array> {
    if (this.closedWith) return Promise.reject(this.closedWith)
    const key = mailboxKey(from, tag)
    const msg = this.ready.get(key)
    if (msg) {
      this.ready.delete(key)
      return Promise.resolve(msg)
    }
    const ended = this.ended.get(from)
    if (ended) return Promise.reject(ended)
    return new Promise((resolve, reject) => this.waiting.set(key, { resolve, reject }))
  }

  /**
   * `from` will send nothing more: its pending and future receives fail with `reason` (messages it already
   * delivered can still be taken).
   */
  endSender(from: string, reason: Error): void {
    if (this.closedWith || this.ended.has(from)) return
    this.ended.set(from, reason)
    const prefix = mailboxKey(from, '')
    for (const [key, w] of this.waiting) {
      if (key.startsWith(prefix)) {
        this.waiting.delete(key)
        w.reject(reason)
      }
    }
  }

  close(reason: Error): void {
    if (this.closedWith) return
    this.closedWith = reason
    for (const w of this.waiting.values()) w.reject(reason)
    this.waiting.clear()
    this.ready.clear()
  }

  get closed(): boolean {
    return this.closedWith !== undefined
  }

  /** Why the mailbox was closed (what every receive after that fails with). */
  get closeReason(): Error | undefined {
    return this.closedWith
  }
}

function mailboxKey(from: string, tag: string): string {
  return `${from}\u0000${tag}`
}

export function channelClosedError(self: string, cause?: Error): SyndicateError {
  return new SyndicateError(
    ERR_CHANNEL_CLOSED,
    cause ? `party channel of ${self} closed: ${cause.message}` : `party channel of ${self} closed`,
    { party: self },
    { cause },
  )
}

/**
 * In-memory channels for `names`: one per party, wired to each other. Payloads are copied on send so a
 * protocol cannot accidentally share memory with its peer (as it cannot over a network).
 */
export function createMemoryChannels(names: readonly string[]): Map<string, PartyChannel> {
  const boxes = new Map(names.map((n) => [n, new Mailbox()]))
  const counters = new Map(names.map((n) => [n, emptyStats()]))
  const channels = new Map<string, PartyChannel>()
  for (const self of names) {
    const stats = counters.get(self)!
    const box = boxes.get(self)!
    channels.set(self, {
      self,
      parties: [...names],
      async send(to, tag, payload) {
        if (box.closeReason) throw box.closeReason
        const dest = boxes.get(to)
        if (!dest || to === self) {
          throw new SyndicateError(ERR_UNKNOWN_PARTY, `${self} cannot send to unknown party ${to}`, { to })
        }
        stats.bytesSent += payload.byteLength
        stats.messagesSent++
        const peer = counters.get(to)!
        peer.bytesReceived += payload.byteLength
        peer.messagesReceived++
        dest.deliver(self, tag, payload.slice())
      },
      recv(from, tag) {
        if (!boxes.has(from) || from === self) {
          return Promise.reject(
            new SyndicateError(ERR_UNKNOWN_PARTY, `${self} cannot receive from unknown party ${from}`, {
              from,
            }),
          )
        }
        return box.take(from, tag)
      },
      stats: () => ({ ...stats }),
      close(reason) {
        box.close(channelClosedError(self, reason))
      },
    })
  }
  return channels
}
