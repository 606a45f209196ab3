import { EventEmitter } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import {
  assertInstallable,
  type ConsortiumDocument,
  findMember,
  type Member,
  parseConsortiumDocument,
} from '../protocol/consortium.ts'
import { ProtocolError, ProtocolErrorCode } from '../protocol/errors.ts'
import type { NodeStore } from './store.ts'

/**
 * The consortium this node belongs to: the installed document chain in the store, and the membership test the
 * connection gater and every protocol handler use. Installing validates the chain and persists before the
 * new membership takes effect.
 */
const SUBLEVEL = 'consortium'

export class Membership extends EventEmitter<{
  change: [ConsortiumDocument, ConsortiumDocument | undefined]
}> {
  private doc: ConsortiumDocument | undefined
  private memberIds = new Set<string>()
  private readonly store: NodeStore
  private readonly self: string

  constructor(store: NodeStore, self: PeerId) {
    super()
    this.store = store
    this.self = self.toString()
  }

  async load(): Promise<void> {
    const cur = await this.store.sub<number>(SUBLEVEL).get('current')
    if (cur === undefined) return
    const raw = await this.store.sub(SUBLEVEL).get(`v/${String(cur).padStart(8, '0')}`)
    this.set(parseConsortiumDocument(raw))
  }

  get document(): ConsortiumDocument | undefined {
    return this.doc
  }

  get version(): number {
    return this.doc?.body.version ?? 0
  }

  isMember(peer: PeerId | string): boolean {
    return this.memberIds.has(peer.toString())
  }

  /** Members other than this node. */
  peers(): Member[] {
    return this.doc?.body.members.filter((m) => m.peerId !== this.self) ?? []
  }

  member(peer: PeerId | string): Member | undefined {
    return findMember(this.doc, peer.toString())
  }

  async install(input: unknown): Promise<ConsortiumDocument> {
    const doc = parseConsortiumDocument(input)
    if (this.doc && doc.body.id === this.doc.body.id && doc.body.version <= this.doc.body.version) {
      throw new ProtocolError(
        ProtocolErrorCode.INVALID_CONSORTIUM,
        `version ${doc.body.version} is not newer than installed version ${this.doc.body.version}`,
      )
    }
    await assertInstallable(doc, this.doc)
    if (!doc.body.members.some((m) => m.peerId === this.self) && !this.doc) {
      throw new ProtocolError(
        ProtocolErrorCode.INVALID_CONSORTIUM,
        `this node (${this.self}) is not a member of consortium ${doc.body.id}`,
      )
    }
    await this.store.sub(SUBLEVEL).batch([
      { type: 'put', key: `v/${String(doc.body.version).padStart(8, '0')}`, value: doc },
      { type: 'put', key: 'current', value: doc.body.version },
    ])
    const previous = this.doc
    this.set(doc)
    this.emit('change', doc, previous)
    return doc
  }

  /** Installed versions after `have`, oldest first (for peers catching up). */
  async versionsAfter(have: number, limit: number): Promise<ConsortiumDocument[]> {
    const out: ConsortiumDocument[] = []
    for (let v = have + 1; v <= this.version && out.length < limit; v++) {
      const raw = await this.store.sub(SUBLEVEL).get(`v/${String(v).padStart(8, '0')}`)
      if (raw) out.push(parseConsortiumDocument(raw))
    }
    return out
  }

  private set(doc: ConsortiumDocument): void {
    this.doc = doc
    this.memberIds = new Set(doc.body.members.map((m) => m.peerId))
  }
}
