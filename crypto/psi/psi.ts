import { getRandomValues } from 'node:crypto'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { type NormaliseOptions, normaliseIds } from './normalise.ts'
import { type PsiPool, sharedPsiPool } from './pool.ts'
import {
  badMessage,
  concat,
  ERR_PSI_PARAMS,
  keysOf,
  randomPermutation,
  recvStream,
  sendHashed,
  settleAll,
  transformStream,
} from './stream.ts'

/**
 * ECDH private set intersection over X25519 (docs/psi.md has the protocol and its security argument).
 * Every party of the channel takes part; two parties run the two-party protocol, three or more the
 * leader-based N-party protocol. The output is an alignment: each receiver gets its own row indices of the
 * common ids, all receivers in the same order (ascending fully-encrypted value, which is pseudorandom).
 */
export interface PsiOptions {
  /** Unique per job run; prefixes every message tag and salts the id hash. */
  session: string
  /** Parties that learn the alignment (default: all). */
  receivers?: readonly string[]
  /** N-party only: the party that computes the intersection (default: the first party). */
  leader?: string
  /** How ids are normalised before hashing; every party must use the same options. */
  normalise?: NormaliseOptions
  /** Points per message (default 10,000). */
  chunk?: number
  /** Worker pool (default: the process-wide pool with one worker per core). */
  pool?: PsiPool
}

export interface PsiResult {
  /** This party's row indices of the intersection, in the common order; null for parties that are not receivers. */
  rows: Uint32Array | null
}

/** Bytes of a fully-encrypted value kept for matching: collisions among 2^32 ids have probability < 2^-64. */
const MATCH_BYTES = 16

export async function runPsi(ch: PartyChannel, ids: readonly string[], opts: PsiOptions): Promise<PsiResult> {
  const parties = ch.parties
  const receivers = opts.receivers ?? parties
  const leader = opts.leader ?? parties[0]
  const chunk = opts.chunk ?? 10_000
  if (parties.length < 2) throw new SyndicateError(ERR_PSI_PARAMS, 'PSI needs at least two parties')
  for (const r of [...receivers, leader]) {
    if (!parties.includes(r))
      throw new SyndicateError(ERR_PSI_PARAMS, `PSI party ${r} is not a party of the channel`)
  }
  if (!Number.isInteger(chunk) || chunk < 1)
    throw new SyndicateError(ERR_PSI_PARAMS, 'chunk must be a positive integer')
  const ctx: Ctx = {
    ch,
    pool: opts.pool ?? sharedPsiPool(),
    items: normaliseIds(ids, opts.normalise),
    tag: `psi/${opts.session}`,
    salt: new TextEncoder().encode(opts.session),
    key: newScalar(),
    receivers,
    chunk,
  }
  return parties.length === 2 ? twoParty(ctx) : multiParty(ctx, leader)
}

interface Ctx {
  ch: PartyChannel
  pool: PsiPool
  items: string[]
  tag: string
  salt: Uint8Array
  key: Uint8Array
  receivers: readonly string[]
  chunk: number
}

/** A fresh X25519 secret: 32 random bytes (X25519 clamps them into a multiple of the cofactor 8). */
function newScalar(): Uint8Array {
  return getRandomValues(new Uint8Array(32))
}

/**
 * Two parties A, B with secrets a, b. Each sends its hashed ids, singly encrypted, in a secret random order;
 * the peer multiplies them by its own secret and (if the owner is a receiver) returns them in the order
 * received, so the owner learns ab·H(x) for each of its rows. Each party already holds ab·H(y) for the peer's
 * ids (it computed them), in an order that says nothing about the peer's rows.
 */
async function twoParty(c: Ctx): Promise<PsiResult> {
  const { ch, pool } = c
  const peer = ch.parties.find((p) => p !== ch.self)!
  const iReceive = c.receivers.includes(ch.self)
  const perm = randomPermutation(c.items.length)
  const shuffled = Array.from(perm, (i) => c.items[i])
  const [, peerSet, own] = await Promise.all([
    sendHashed(ch, pool, peer, `${c.tag}/e1`, c.key, c.salt, shuffled, c.chunk),
    transformStream(
      ch,
      pool,
      peer,
      `${c.tag}/e1`,
      c.key,
      MATCH_BYTES,
      c.receivers.includes(peer) ? { to: peer, tag: `${c.tag}/e2` } : undefined,
    ),
    iReceive
      ? recvStream(ch, peer, `${c.tag}/e2`, MATCH_BYTES, { count: c.items.length, chunk: c.chunk })
      : Promise.resolve(null),
  ])
  if (!own) return { rows: null }
  const [mine] = intersect([keysOf(own, MATCH_BYTES), keysOf(concat(peerSet.chunks), MATCH_BYTES)])
  return { rows: Uint32Array.from(mine, (p) => perm[p]) }
}

/**
 * N parties on a ring. Each party's singly-encrypted, shuffled ids travel the ring, every party multiplying
 * them by its secret in place; the last hop (the owner's predecessor) sends the fully-encrypted values to the
 * leader, still in the owner's secret order. The leader intersects the N sets and tells each receiver the
 * positions (in the receiver's secret order) of the common values, sorted by value.
 */
async function multiParty(c: Ctx, leader: string): Promise<PsiResult> {
  const { ch, pool } = c
  const ring = ch.parties
  const at = (i: number) => ring[(i + ring.length) % ring.length]
  const me = ring.indexOf(ch.self)
  const next = at(me + 1)
  const prev = at(me - 1)
  const perm = randomPermutation(c.items.length)
  const shuffled = Array.from(perm, (i) => c.items[i])
  const isLeader = ch.self === leader
  const finals = new Map<string, Promise<Uint8Array>>()

  const work: Promise<unknown>[] = [
    sendHashed(ch, pool, next, `${c.tag}/ring/${ch.self}`, c.key, c.salt, shuffled, c.chunk),
  ]
  for (const owner of ring) {
    if (owner === ch.self) continue
    const tag = `${c.tag}/ring/${owner}`
    if (next !== owner) {
      work.push(transformStream(ch, pool, prev, tag, c.key, 32, { to: next, tag }))
    } else if (isLeader) {
      const t = transformStream(ch, pool, prev, tag, c.key, MATCH_BYTES).then((r) => concat(r.chunks))
      finals.set(owner, t)
    } else {
      work.push(
        transformStream(ch, pool, prev, tag, c.key, MATCH_BYTES, {
          to: leader,
          tag: `${c.tag}/final/${owner}`,
        }),
      )
    }
  }
  let mine: Promise<Uint8Array | null>
  if (isLeader) {
    for (const owner of ring) {
      const from = at(ring.indexOf(owner) - 1)
      if (from !== leader) finals.set(owner, recvStream(ch, from, `${c.tag}/final/${owner}`, MATCH_BYTES))
    }
    mine = announce(c, ring, finals)
  } else {
    mine = c.receivers.includes(ch.self) ? ch.recv(leader, `${c.tag}/result`) : Promise.resolve(null)
  }
  const [positions] = await Promise.all([mine, settleAll(work)])
  if (!positions) return { rows: null }
  return { rows: positionsToRows(leader, positions, perm) }
}

/** Leader: intersects every party's fully-encrypted set, sends each receiver its positions, returns its own. */
async function announce(c: Ctx, ring: readonly string[], finals: Map<string, Promise<Uint8Array>>) {
  const sets = await settleAll(ring.map((o) => finals.get(o)!))
  const positions = intersect(sets.map((s) => keysOf(s, MATCH_BYTES)))
  let mine: Uint8Array | null = null
  for (let i = 0; i < ring.length; i++) {
    if (!c.receivers.includes(ring[i])) continue
    const bytes = new Uint8Array(positions[i].buffer)
    if (ring[i] === c.ch.self) mine = bytes
    else await c.ch.send(ring[i], `${c.tag}/result`, bytes)
  }
  return mine
}

/**
 * Positions of the common values in each set, all in the same order (ascending value). Values are binary
 * strings, so the default sort is byte order.
 */
export function intersect(sets: readonly (readonly string[])[]): Uint32Array[] {
  const maps: Map<string, number>[] = []
  let alive: Map<string, number> | undefined
  for (const set of sets) {
    const m = new Map<string, number>()
    for (let i = 0; i < set.length; i++) if (!alive || alive.has(set[i])) m.set(set[i], i)
    maps.push(m)
    alive = m
  }
  const common = [...(alive ?? new Map()).keys()].sort()
  return maps.map((m) => Uint32Array.from(common, (k) => m.get(k)!))
}

/** Maps positions in this party's secret order (sent by the leader) back to row indices, checking them. */
function positionsToRows(leader: string, bytes: Uint8Array, perm: Uint32Array): Uint32Array {
  if (bytes.length % 4 !== 0) throw badMessage(leader, `result of ${bytes.length} bytes`)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const rows = new Uint32Array(bytes.length / 4)
  const seen = new Uint8Array(perm.length)
  for (let i = 0; i < rows.length; i++) {
    const p = dv.getUint32(4 * i, true)
    if (p >= perm.length || seen[p]) throw badMessage(leader, `result position ${p} out of range or repeated`)
    seen[p] = 1
    rows[i] = perm[p]
  }
  return rows
}
