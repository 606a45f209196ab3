import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Hono } from 'hono'
import type { Logger } from 'pino'
import { ed25519Sign, fromHex, type Member, memberFromPeerId, type Signer } from '../governance/keys.ts'
import { GovernanceLog } from '../governance/log.ts'
import { localLogPeer, Witness, type WitnessResult } from '../governance/witness.ts'
import { type ConsortiumDocument, documentHash } from '../protocol/consortium.ts'
import { handleProtocol } from '../protocol/define.ts'
import { logProtocol, remoteLogPeer, serveLog } from '../protocol/log.ts'
import type { Host } from './host.ts'
import type { Membership } from './membership.ts'
import { auditRoutes } from './services/audit/routes.ts'
import type { NodeStore } from './store.ts'

/**
 * The node's governance: its own log (opened once a consortium is installed, since a log is named by the
 * consortium), a checkpoint signed shortly after every burst of entries, a witness that cosigns other
 * members' checkpoints over libp2p, and the audit API. Membership changes are logged here as they install.
 */
const CHECKPOINT_DELAY_MS = 200

export class Governance {
  private log: GovernanceLog | undefined
  private witness: Witness | undefined
  private checkpointTimer: NodeJS.Timeout | undefined
  private witnessTimer: NodeJS.Timeout | undefined
  private witnessing: Promise<unknown> | undefined
  private readonly signer: Signer
  private readonly deps: {
    host: Host
    membership: Membership
    store: NodeStore
    logger: Logger
    witnessIntervalMs: number
  }

  constructor(deps: {
    host: Host
    membership: Membership
    store: NodeStore
    logger: Logger
    privateKey: PrivateKey
    name: string
    witnessIntervalMs?: number
  }) {
    this.deps = { ...deps, witnessIntervalMs: deps.witnessIntervalMs ?? 10_000 }
    const member = memberFromPeerId(deps.name, deps.host.peerId.toString())
    // Every log entry is signed: a key imported once into node:crypto, not once per signature.
    this.signer = { member, sign: ed25519Sign(deps.privateKey.raw, fromHex(member.publicKey)) }
  }

  members = (): Member[] =>
    this.deps.membership.document?.body.members.map((m) => memberFromPeerId(m.name, m.peerId)) ?? []

  async start(): Promise<void> {
    const { host, membership } = this.deps
    await handleProtocol(
      host,
      logProtocol,
      async (req) => {
        if (!this.log) throw new Error('this node has no governance log yet')
        return serveLog(localLogPeer([this.log], this.members), req)
      },
      { admit: (p: PeerId) => membership.isMember(p), log: this.deps.logger },
    )
    if (membership.document) await this.open(membership.document)
    membership.on('change', (doc, previous) => {
      void this.onMembershipChange(doc, previous).catch((e) =>
        this.deps.logger.error({ err: (e as Error).message }, 'cannot log a membership change'),
      )
    })
    this.witnessTimer = setInterval(() => {
      if (this.witnessing) return
      this.witnessing = this.witnessAll()
        .catch((e) => this.deps.logger.warn({ err: (e as Error).message }, 'witness round failed'))
        .finally(() => {
          this.witnessing = undefined
        })
    }, this.deps.witnessIntervalMs)
    this.witnessTimer.unref()
  }

  /** Stops the timers and waits for a witness round under way, so that none touches a closed store. */
  async stop(): Promise<void> {
    clearTimeout(this.checkpointTimer)
    clearInterval(this.witnessTimer)
    await this.witnessing
  }

  /** The log, once a consortium is installed. */
  get current(): GovernanceLog | undefined {
    return this.log
  }

  /** What the job service and registries write through: appends, then schedules a checkpoint. */
  recorder = {
    append: async (type: string, body: Record<string, unknown>, options: { jobId?: string }) => {
      if (!this.log) return undefined
      const entry = await this.log.append(type as never, body as never, options)
      this.scheduleCheckpoint()
      return entry
    },
  }

  async checkpointNow(): Promise<string | undefined> {
    clearTimeout(this.checkpointTimer)
    return this.log?.checkpoint()
  }

  /** Fetches and cosigns every other member's latest checkpoint; inconsistencies are kept as evidence. */
  async witnessAll(): Promise<Record<string, WitnessResult['status']>> {
    const doc = this.deps.membership.document
    const out: Record<string, WitnessResult['status']> = {}
    if (!doc || !this.witness) return out
    for (const m of doc.body.members) {
      if (m.peerId === this.deps.host.peerId.toString()) continue
      const origin = `${doc.body.id}/${m.peerId}`
      const r = await this.witness.witness(remoteLogPeer(this.deps.host, peerIdFromString(m.peerId)), origin)
      out[m.name] = r.status
      if (r.status === 'inconsistent' || r.status === 'flagged') {
        this.deps.logger.error(
          { member: m.name, origin, status: r.status },
          'governance log of a member is inconsistent; evidence kept',
        )
      }
    }
    return out
  }

  /** The audit sub-app: answers 503 until a consortium (and so a log) exists. */
  routes(): Hono {
    const app = new Hono()
    let inner: Hono | undefined
    app.all('*', async (c) => {
      if (!this.log || !this.witness)
        return c.json(
          {
            error: {
              code: 'ERR_NO_CONSORTIUM',
              message: 'no consortium installed yet, so no governance log',
            },
          },
          503,
        )
      inner ??= auditRoutes({ log: this.log, members: this.members, witness: this.witness })
      const url = new URL(c.req.url)
      url.pathname = url.pathname.replace(/^\/v1\/audit/, '') || '/'
      return inner.fetch(new Request(url, c.req.raw))
    })
    return app
  }

  private async open(doc: ConsortiumDocument): Promise<void> {
    this.log = await GovernanceLog.open({
      db: this.deps.store.db,
      consortiumId: doc.body.id,
      signer: this.signer,
    })
    this.witness = new Witness({ db: this.deps.store.db, signer: this.signer, members: this.members })
  }

  private async onMembershipChange(
    doc: ConsortiumDocument,
    previous: ConsortiumDocument | undefined,
  ): Promise<void> {
    if (!this.log) await this.open(doc)
    const hash = documentHash(doc.body)
    const before = new Set(previous?.body.members.map((m) => m.peerId) ?? [])
    const after = new Set(doc.body.members.map((m) => m.peerId))
    for (const m of doc.body.members) {
      if (!before.has(m.peerId))
        await this.recorder.append(
          'member.join',
          { member: memberFromPeerId(m.name, m.peerId), documentHash: hash },
          {},
        )
    }
    for (const m of previous?.body.members ?? []) {
      if (!after.has(m.peerId))
        await this.recorder.append(
          'member.leave',
          {
            peerId: m.peerId,
            documentHash: hash,
            reason: `removed in consortium version ${doc.body.version}`,
          },
          {},
        )
    }
  }

  private scheduleCheckpoint(): void {
    if (this.checkpointTimer) return
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = undefined
      this.log
        ?.checkpoint()
        .catch((e) => this.deps.logger.error({ err: (e as Error).message }, 'cannot sign a checkpoint'))
    }, CHECKPOINT_DELAY_MS)
    this.checkpointTimer.unref()
  }
}
