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
    return this.installChain([input])
  }

  /**
   * Installs one document or a chain of successive versions (oldest first), each checked against the one
   * before it. A node joining an existing consortium installs the chain from the genesis on; only the last
   * version has to list it. Versions already held are skipped (the first new one must chain to what is
   * held, so a forked history is refused). Nothing is stored unless the whole chain is valid.
   */
  async installChain(inputs: unknown[]): Promise<ConsortiumDocument> {
    const docs = inputs.map((d) => parseConsortiumDocument(d))
    const held = this.doc
    const fresh = held
      ? docs.filter((d) => !(d.body.id === held.body.id && d.body.version <= held.body.version))
      : docs
    const last = fresh.at(-1)
    if (!last) {
      throw new ProtocolError(
        ProtocolErrorCode.INVALID_CONSORTIUM,
        `nothing newer than installed version ${this.version}`,
      )
    }
    let previous = held
    for (const doc of fresh) {
      await assertInstallable(doc, previous)
      previous = doc
    }
    if (!held && !last.body.members.some((m) => m.peerId === this.self)) {
      throw new ProtocolError(
        ProtocolErrorCode.INVALID_CONSORTIUM,
        `this node (${this.self}) is not a member of consortium ${last.body.id}`,
      )
    }
    await this.store.sub(SUBLEVEL).batch([
      ...fresh.map((d) => ({
        type: 'put' as const,
        key: `v/${String(d.body.version).padStart(8, '0')}`,
        value: d,
      })),
      { type: 'put' as const, key: 'current', value: last.body.version },
    ])
    this.set(last)
    this.emit('change', last, held)
    return last
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
