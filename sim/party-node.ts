import { peerIdFromString } from '@libp2p/peer-id'
import type { PartyChannel } from '../crypto/channel.ts'
import { type RunningNode, startNode } from '../node/daemon.ts'
import { loadIdentity } from '../node/identity.ts'
import { initNode } from '../node/init.ts'
import { type ConsortiumDocument, newGenesis, signDocument } from '../protocol/consortium.ts'

/**
 * One party of a loopback consortium, started and joined on its own: the steps `startConsortium` and
 * `startLoopbackChannels` run for every node in one process, split so that each party can run in its own worker
 * thread (or process) while a coordinator only passes the members' public data and the signed genesis document
 * between them. Same node software, same 127.0.0.1 listeners on port 0, same full mesh, same session channels.
 */
export interface PartyInfo {
  name: string
  peerId: string
  addresses: string[]
  /** The node's data directory (the coordinator signs the genesis with the key stored there). */
  dir: string
}

/**
 * Initialises a node in `dir` and starts it on 127.0.0.1 with port 0 for libp2p and HTTP; `token` is its operator
 * token (for its HTTP API).
 */
export async function startPartyNode(
  dir: string,
  name: string,
  opts: { logLevel?: string } = {},
): Promise<{ node: RunningNode; info: PartyInfo; token: string }> {
  const { token } = await initNode({ dir, name, httpPort: 0 })
  const node = await startNode({ dir, overrides: { logLevel: opts.logLevel ?? 'warn' } })
  return { node, info: { name, peerId: node.peerId.toString(), addresses: node.addresses(), dir }, token }
}

/** The genesis document of `members`, signed by every member's own key (read from its data directory). */
export async function signedGenesis(members: PartyInfo[], threshold?: number): Promise<ConsortiumDocument> {
  let doc = newGenesis({
    id: 'sim',
    name: `Simulated consortium of ${members.length}`,
    threshold,
    members: members.map((m) => ({
      name: m.name,
      peerId: m.peerId,
      roles: ['institution'],
      addresses: m.addresses,
    })),
  })
  for (const m of members) {
    const id = loadIdentity(m.dir)
    doc = await signDocument(doc, id.privateKey, id.peerId)
  }
  return doc
}

/**
 * Installs `doc` on `node` and waits until it is connected to every other member (or, once `timeoutMs` has
 * passed, at least to the `required` ones: default every member). Resolves with the members it had no
 * connection to when it went on.
 */
export async function joinConsortium(
  node: RunningNode,
  self: string,
  doc: ConsortiumDocument,
  opts: { required?: string[]; timeoutMs?: number } = {},
): Promise<{ unconnected: string[] }> {
  await node.membership.install(doc)
  const others = doc.body.members.filter((m) => m.name !== self)
  const required = new Set(opts.required ?? others.map((m) => m.name))
  const timeoutMs = opts.timeoutMs ?? 30_000
  const deadline = Date.now() + timeoutMs
  let missing = others
  let redial = Date.now() + 5_000
  for (;;) {
    missing = missing.filter((m) => node.host.getConnections(peerIdFromString(m.peerId)).length === 0)
    if (missing.length === 0) break
    // The mesh maintainer backs off after refusals from members that had not installed the document yet;
    // the links the job needs are dialled again directly.
    if (Date.now() > redial) {
      redial = Date.now() + 5_000
      for (const m of missing.filter((m) => required.has(m.name)))
        node.host
          .dial(peerIdFromString(m.peerId), { signal: AbortSignal.timeout(10_000) })
          .catch(() => undefined)
    }
    if (Date.now() > deadline) {
      const lacking = missing.filter((m) => required.has(m.name)).map((m) => m.name)
      if (lacking.length === 0) break
      throw new Error(
        `${self}: no connection to ${lacking.length} members after ${timeoutMs} ms (${lacking.slice(0, 5).join(', ')})`,
      )
    }
    await new Promise((r) => setTimeout(r, 25))
  }
  return { unconnected: missing.map((m) => m.name) }
}

/** joinConsortium, then opens `node`'s end of `session` as party `self` (every member's name is a party). */
export async function joinSession(
  node: RunningNode,
  self: string,
  doc: ConsortiumDocument,
  session: string,
  opts: { required?: string[]; timeoutMs?: number } = {},
): Promise<{ channel: PartyChannel; unconnected: string[] }> {
  const { unconnected } = await joinConsortium(node, self, doc, opts)
  const parties = Object.fromEntries(doc.body.members.map((m) => [m.name, m.peerId]))
  return { channel: node.sessions.open(session, self, parties), unconnected }
}
