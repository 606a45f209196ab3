import { Mutex } from 'async-mutex'
import { SyndicateError } from '../crypto/errors.ts'
import { verifyBatchSignature } from './batch-sign.ts'
import {
  addSignatureLines,
  cosignLine,
  memberDirectory,
  parseCheckpointBody,
  parseNote,
  type VerifiedCheckpoint,
  verifyCheckpointNote,
} from './checkpoint.ts'
import { decodeEntry, entrySigningBytes, parseOrigin } from './entry.ts'
import { fromHex, type Member, type Signer, toHex } from './keys.ts'
import { ERR_GOV_RANGE, type GovernanceLog, MAX_PAGE } from './log.ts'
import { bytesEqual, Frontier, leafHash, verifyConsistency } from './merkle.ts'
import {
  evidencePrefix,
  fromUtf8,
  type GovernanceDb,
  type GovernanceStore,
  mirrorKey,
  openStore,
  pad,
  prefixRange,
  utf8,
  witnessKey,
} from './store.ts'

/**
 * Witnessing: a member fetches another member's latest checkpoint and a consistency proof from the last
 * checkpoint it verified for that log, checks both, and cosigns. A log caught showing two views that cannot
 * both be true (same size and different roots, or a consistency proof that fails) is flagged, and both
 * signed checkpoints plus the proof are kept as evidence: signed by the log's owner, they prove the fork to
 * anyone. A flagged log is never cosigned again.
 */

/** What a witness needs from the log's owner; the node implements it over libp2p, tests in-process. */
export interface LogPeer {
  latestCheckpoint(origin: string): Promise<string>
  consistencyProof(origin: string, from: number, to: number): Promise<Uint8Array[]>
  entries(origin: string, start: number, end: number): Promise<Uint8Array[]>
  /** Delivers a cosigned checkpoint back to the owner, who stores the cosignature (optional). */
  submitCosigned?(origin: string, note: string): Promise<void>
}

export interface Evidence {
  origin: string
  kind: 'same-size-different-root' | 'consistency-proof-failed'
  detectedAt: number
  /** The checkpoint the witness had verified before (signed note). */
  earlier: string
  /** The checkpoint that contradicts it (signed note). */
  later: string
  /** The consistency proof the log served between the two sizes (hex), if any. */
  proof: string[]
  detail: string
}

export type WitnessResult =
  | { status: 'cosigned'; checkpoint: VerifiedCheckpoint; cosigned: string; delivered: boolean }
  | { status: 'stale'; checkpoint: VerifiedCheckpoint; detail: string }
  | { status: 'inconsistent'; evidence: Evidence }
  | { status: 'flagged'; evidence: Evidence[] }
  | { status: 'rejected'; reason: string }

export interface WitnessOptions {
  db: GovernanceDb
  signer: Signer
  /** The current consortium members (called on every check, so membership changes apply at once). */
  members: () => readonly Member[]
  /**
   * Also fetch every new entry, check it (canonical form, dense index, origin, owner's signature) and rebuild
   * the tree from them: a cosignature then also says "every entry up to this size is well-formed and signed".
   */
  verifyEntries?: boolean
  now?: () => number
}

const MAX_PROOF_HASHES = 128

export class Witness {
  private readonly store: GovernanceStore
  private readonly signer: Signer
  private readonly members: () => readonly Member[]
  private readonly now: () => number
  private readonly verifyEntries: boolean
  private readonly mutex = new Mutex()

  constructor(options: WitnessOptions) {
    this.store = openStore(options.db)
    this.signer = options.signer
    this.members = options.members
    this.now = options.now ?? Date.now
    this.verifyEntries = options.verifyEntries ?? false
  }

  /** Fetches `origin`'s latest checkpoint from `peer`, checks it and cosigns it when consistent. */
  async witness(peer: LogPeer, origin: string): Promise<WitnessResult> {
    let note: string
    try {
      note = await peer.latestCheckpoint(origin)
    } catch (e) {
      return {
        status: 'rejected',
        reason: `could not fetch the latest checkpoint of ${origin}: ${(e as Error).message}`,
      }
    }
    return this.observe(note, peer, origin)
  }

  /**
   * Checks a checkpoint of `origin` learned from anywhere (the owner, another member's gossip, an auditor's
   * bundle) against what this witness saw before; `peer` serves the consistency proof.
   */
  observe(note: string, peer: LogPeer, origin: string): Promise<WitnessResult> {
    return this.mutex.runExclusive(() => this.check(note, peer, origin))
  }

  private async check(note: string, peer: LogPeer, origin: string): Promise<WitnessResult> {
    if (typeof note !== 'string') return { status: 'rejected', reason: 'the peer sent no checkpoint' }
    let seen: VerifiedCheckpoint
    const directory = memberDirectory(this.members())
    try {
      seen = verifyCheckpointNote(note, directory)
    } catch (e) {
      return { status: 'rejected', reason: (e as Error).message }
    }
    if (seen.checkpoint.origin !== origin) {
      return {
        status: 'rejected',
        reason: `asked for ${origin}, got a checkpoint of ${seen.checkpoint.origin}`,
      }
    }
    if (seen.checkpoint.origin.endsWith(`/${this.signer.member.peerId}`)) {
      return { status: 'rejected', reason: 'a log is not witnessed by its own owner' }
    }
    const flagged = await this.evidence(origin)
    if (flagged.length > 0) return { status: 'flagged', evidence: flagged }

    const prevRaw = await this.store.get(witnessKey(origin))
    const prevNote = prevRaw === undefined ? undefined : fromUtf8(prevRaw)
    if (prevNote !== undefined) {
      const prev = parseCheckpointBody(parseNote(prevNote).body)
      const cur = seen.checkpoint
      if (cur.size === prev.size) {
        if (!bytesEqual(cur.root, prev.root)) {
          return this.flag(
            origin,
            'same-size-different-root',
            prevNote,
            seen.note,
            [],
            `two roots for size ${cur.size}`,
          )
        }
      } else {
        const [small, large] = cur.size < prev.size ? [cur, prev] : [prev, cur]
        let proof: Uint8Array[]
        try {
          proof = await peer.consistencyProof(origin, small.size, large.size)
          if (
            !Array.isArray(proof) ||
            proof.length > MAX_PROOF_HASHES ||
            !proof.every((p) => p instanceof Uint8Array)
          ) {
            throw new Error('malformed proof')
          }
        } catch (e) {
          return {
            status: 'rejected',
            reason: `no consistency proof from ${small.size} to ${large.size}: ${(e as Error).message}`,
          }
        }
        if (!verifyConsistency(small.size, large.size, proof, small.root, large.root)) {
          const [earlier, later] = cur.size < prev.size ? [seen.note, prevNote] : [prevNote, seen.note]
          return this.flag(
            origin,
            'consistency-proof-failed',
            earlier,
            later,
            proof,
            `the tree of size ${large.size} does not extend the tree of size ${small.size}`,
          )
        }
        if (cur.size < prev.size) {
          return {
            status: 'stale',
            checkpoint: seen,
            detail: `already saw size ${prev.size}; this one is consistent`,
          }
        }
      }
    }
    const mirrored = this.verifyEntries ? await this.mirror(peer, seen, directory) : undefined
    if (typeof mirrored === 'string') return { status: 'rejected', reason: mirrored }
    await this.store.batch([
      { type: 'put', key: witnessKey(origin), value: utf8(seen.note) },
      ...(mirrored ? [{ type: 'put' as const, key: mirrorKey(origin), value: mirrored }] : []),
    ])
    const line = await cosignLine(seen.body, this.signer, Math.floor(this.now() / 1000))
    const cosigned = addSignatureLines(seen.note, [line])
    let delivered = false
    if (peer.submitCosigned) {
      try {
        await peer.submitCosigned(origin, cosigned)
        delivered = true
      } catch {
        delivered = false
      }
    }
    return { status: 'cosigned', checkpoint: seen, cosigned, delivered }
  }

  /**
   * Fetches the entries between the last mirrored size and the checkpoint, checks each and extends the
   * stored right-edge frontier; returns the new frontier (to store) or the reason the entries are refused.
   */
  private async mirror(
    peer: LogPeer,
    seen: VerifiedCheckpoint,
    directory: ReadonlyMap<string, Member>,
  ): Promise<Uint8Array | string> {
    const { origin, size, root } = seen.checkpoint
    const owner = directory.get(parseOrigin(origin).peerId)!
    const raw = await this.store.get(mirrorKey(origin))
    const state =
      raw === undefined
        ? { size: 0, hashes: [] }
        : (JSON.parse(fromUtf8(raw)) as { size: number; hashes: string[] })
    const frontier = new Frontier(state.size, state.hashes.map(fromHex))
    while (frontier.size < size) {
      const start = frontier.size
      let page: Uint8Array[]
      try {
        page = await peer.entries(origin, start, Math.min(size, start + MAX_PAGE))
        if (!Array.isArray(page) || page.length === 0 || page.length > size - start)
          throw new Error('bad page')
      } catch (e) {
        return `could not fetch entries from ${start}: ${(e as Error).message}`
      }
      for (const bytes of page) {
        const index = frontier.size
        const d =
          bytes instanceof Uint8Array ? decodeEntry(bytes) : { ok: false as const, reason: 'not bytes' }
        if (!d.ok) return `entry ${index}: ${d.reason}`
        const e = d.entry
        if (e.index !== index || e.origin !== origin || e.signer.publicKey !== owner.publicKey) {
          return `entry ${index}: wrong index, origin or signer`
        }
        if (!verifyBatchSignature(owner.publicKey, entrySigningBytes(e), fromHex(e.signature))) {
          return `entry ${index}: the owner's signature does not verify`
        }
        frontier.append(leafHash(bytes))
      }
    }
    if (frontier.size !== size || !bytesEqual(frontier.root(), root)) {
      return `the entries served do not hash to the root of the checkpoint at size ${size}`
    }
    return utf8(JSON.stringify({ size: frontier.size, hashes: frontier.hashes.map(toHex) }))
  }

  private async flag(
    origin: string,
    kind: Evidence['kind'],
    earlier: string,
    later: string,
    proof: Uint8Array[],
    detail: string,
  ): Promise<WitnessResult> {
    const evidence: Evidence = {
      origin,
      kind,
      detectedAt: this.now(),
      earlier,
      later,
      proof: proof.map(toHex),
      detail,
    }
    const existing = await this.evidence(origin)
    await this.store.put(
      `${evidencePrefix(origin)}${pad(evidence.detectedAt)}/${existing.length}`,
      utf8(JSON.stringify(evidence)),
    )
    return { status: 'inconsistent', evidence }
  }

  /** The last checkpoint this witness verified and cosigned for `origin`. */
  async lastSeen(origin: string): Promise<string | undefined> {
    const v = await this.store.get(witnessKey(origin))
    return v === undefined ? undefined : fromUtf8(v)
  }

  /** Evidence kept against `origin` (or against every log), oldest first. */
  async evidence(origin?: string): Promise<Evidence[]> {
    const out: Evidence[] = []
    const range = prefixRange(origin === undefined ? 'x/' : evidencePrefix(origin))
    for await (const v of this.store.values(range)) out.push(JSON.parse(fromUtf8(v)) as Evidence)
    return out
  }
}

/**
 * A LogPeer served by logs in this process: what the node's libp2p handler calls on the owner's side, and
 * what tests use in place of the network.
 */
export function localLogPeer(logs: Iterable<GovernanceLog>, members: () => readonly Member[]): LogPeer {
  const byOrigin = new Map<string, GovernanceLog>()
  for (const log of logs) byOrigin.set(log.origin, log)
  const get = (origin: string): GovernanceLog => {
    const log = byOrigin.get(origin)
    if (!log) throw new SyndicateError(ERR_GOV_RANGE, `no log ${origin} here`)
    return log
  }
  return {
    async latestCheckpoint(origin) {
      const note = await get(origin).latestCheckpoint()
      if (note === undefined) throw new SyndicateError(ERR_GOV_RANGE, `${origin} has no checkpoint yet`)
      return note
    },
    consistencyProof: (origin, from, to) => get(origin).consistencyProof(from, to),
    entries(origin, start, end) {
      if (end - start > MAX_PAGE)
        throw new SyndicateError(ERR_GOV_RANGE, `ask for at most ${MAX_PAGE} entries at a time`)
      return get(origin).rawEntries(start, end)
    },
    async submitCosigned(origin, note) {
      await get(origin).addCosignatures(note, members())
    },
  }
}
