import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { ComponentLogger, Libp2p, Logger as Libp2pLogger, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import type { NodeConfig } from './config.ts'
import type { Identity } from './identity.ts'
import type { Membership } from './membership.ts'

/**
 * The libp2p host: TCP, Noise, yamux, identify and ping, and a connection gater that admits consortium members
 * only. The gater runs after the Noise handshake has authenticated the remote's peer id and before the
 * connection is upgraded, so a non-member's streams never reach a handler.
 */
/**
 * libp2p's default logger builds a (disabled) debug logger for every component and every stream; without
 * DEBUG set, one shared no-op logger serves them all. With DEBUG, libp2p's own loggers apply as usual.
 */
const noop: Libp2pLogger = Object.assign(() => {}, {
  error: () => {},
  trace: () => {},
  enabled: false,
  newScope: () => noop,
})
const QUIET_LOGGER: ComponentLogger = { forComponent: () => noop }

export async function createHost(opts: {
  identity: Identity
  config: NodeConfig
  membership: Membership
  log: Logger
}) {
  const { membership, log } = opts
  const refuse = (peer: PeerId, direction: string) => {
    const deny = !membership.isMember(peer)
    if (deny) log.warn({ peer: peer.toString(), direction }, 'refused connection: not a consortium member')
    return deny
  }
  return createLibp2p({
    privateKey: opts.identity.privateKey,
    ...(process.env.DEBUG ? {} : { logger: QUIET_LOGGER }),
    addresses: {
      listen: opts.config.listen,
      announce: opts.config.announce.length > 0 ? opts.config.announce : undefined,
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: {
      denyDialPeer: (peer) => !membership.isMember(peer),
      denyInboundEncryptedConnection: (peer) => refuse(peer, 'inbound'),
      denyOutboundEncryptedConnection: (peer) => refuse(peer, 'outbound'),
      // Members are known and gated by identity, so the per-host rate limits meant for open networks only
      // get in the way (a simulator runs every member from 127.0.0.1).
      denyDialMultiaddr: () => false,
    },
    connectionManager: {
      maxConnections: 1024,
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 256,
      maxParallelDials: 64,
      dialTimeout: 10_000,
      // The mesh maintainer owns redials with its own backoff, without giving up on a member.
      reconnectRetries: 0,
    },
    // Joint jobs keep a node's event loop busy for seconds at a time (homomorphic encryption, large matrix
    // products), and a simulator runs several nodes in one process: a peer that is slow to answer a ping is
    // busy, not gone. Dead peers still surface through TCP errors and job deadlines.
    connectionMonitor: { pingInterval: 15_000, pingTimeout: { minTimeout: 60_000, maxTimeout: 300_000 } },
    services: { identify: identify(), ping: ping() },
  })
}

export type Host = Awaited<ReturnType<typeof createHost>>

const FALLBACK_DIAL_MS = 3000

/**
 * Keeps a connection open to every member: dials members that are not connected, with exponential backoff
 * per member, forever while they are members; hangs up on peers removed from the consortium.
 */
export class MeshMaintainer {
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly delays = new Map<string, number>()
  private stopped = false
  private readonly host: Libp2p
  private readonly membership: Membership
  private readonly config: NodeConfig
  private readonly log: Logger

  constructor(host: Libp2p, membership: Membership, config: NodeConfig, log: Logger) {
    this.host = host
    this.membership = membership
    this.config = config
    this.log = log
  }

  start(): void {
    this.host.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString()
      if (!this.stopped && this.membership.isMember(peer)) {
        this.log.info(
          { peer, member: this.membership.member(peer)?.name },
          'member disconnected; will redial',
        )
        this.schedule(peer, this.config.reconnect.initialDelayMs)
      }
    })
    this.host.addEventListener('peer:connect', (evt) => {
      const peer = evt.detail.toString()
      // A dial that was under way when the peer was removed can still complete: drop it here.
      if (!this.membership.isMember(peer)) {
        this.host.hangUp(evt.detail).catch(() => undefined)
        return
      }
      this.delays.delete(peer)
      clearTimeout(this.timers.get(peer))
      this.timers.delete(peer)
    })
    this.membership.on('change', () => this.reconcile())
    this.reconcile()
  }

  stop(): void {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  /** Dials every member not yet connected and drops connections to non-members. */
  reconcile(): void {
    const self = this.host.peerId.toString()
    for (const m of this.membership.peers()) {
      if (this.host.getConnections(peerIdFromString(m.peerId)).length > 0) continue
      // Of two members starting together, the one with the smaller id dials; the other dials only if no
      // connection came after a while, so most pairs end up with a single connection.
      this.schedule(m.peerId, self < m.peerId ? 0 : FALLBACK_DIAL_MS)
    }
    for (const conn of this.host.getConnections()) {
      if (!this.membership.isMember(conn.remotePeer)) {
        this.log.warn(
          { peer: conn.remotePeer.toString() },
          'closing connection to a peer no longer in the consortium',
        )
        conn.close().catch(() => undefined)
      }
    }
  }

  private schedule(peer: string, delay: number): void {
    if (this.stopped || this.timers.has(peer)) return
    this.timers.set(
      peer,
      setTimeout(() => {
        this.timers.delete(peer)
        void this.dial(peer)
      }, delay),
    )
  }

  private async dial(peer: string): Promise<void> {
    const member = this.membership.member(peer)
    if (this.stopped || !member) return
    const id = peerIdFromString(peer)
    if (this.host.getConnections(id).length > 0) return
    try {
      const addrs = member.addresses.map((a) => multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${peer}`))
      if (addrs.length > 0)
        await this.host.peerStore.merge(id, { multiaddrs: addrs.map((a) => a.decapsulateCode(421)) })
      await this.host.dial(id, { signal: AbortSignal.timeout(10_000) })
      this.delays.delete(peer)
    } catch (e) {
      if (this.stopped) return
      const next = Math.min(
        this.config.reconnect.maxDelayMs,
        (this.delays.get(peer) ?? this.config.reconnect.initialDelayMs) * 2,
      )
      this.delays.set(peer, next)
      this.log.debug(
        { peer, member: member.name, err: (e as Error).message, retryInMs: next },
        'dial to member failed',
      )
      this.schedule(peer, next)
    }
  }
}
