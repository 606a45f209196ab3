import { Mutex } from 'async-mutex'
import { z } from 'zod'
import { inCanonicalOrder } from '../crypto/canonical.ts'
import { SyndicateError } from '../crypto/errors.ts'
import { MAX_SIGNATURE_BYTES, signMessages } from './batch-sign.ts'
import {
  addSignatureLines,
  type Checkpoint,
  memberDirectory,
  signCheckpoint,
  type VerifiedCheckpoint,
  verifyCheckpointNote,
} from './checkpoint.ts'
import {
  type BodyOf,
  bodyProblem,
  decodeEntry,
  ENTRY_SIGNING_PREFIX,
  ENTRY_TYPES,
  ENTRY_VERSION,
  type EntryType,
  ERR_GOV_ENTRY,
  type LogEntry,
  MAX_ENTRY_BYTES,
  originOf,
  type UnsignedEntry,
} from './entry.ts'
import { fromHex, Hex32, type Member, type Signer, toHex } from './keys.ts'
import {
  bytesEqual,
  consistencyProofRanges,
  Frontier,
  hashRanges,
  inclusionProofRanges,
  leafHash,
  type NodeId,
} from './merkle.ts'
import {
  checkpointKey,
  entryKey,
  fromUtf8,
  type GovernanceDb,
  type GovernanceStore,
  nodeKey,
  openStore,
  prefixRange,
  STATE_KEY,
  utf8,
} from './store.ts'

export const ERR_GOV_STORE_CORRUPT = 'ERR_GOV_STORE_CORRUPT'
export const ERR_GOV_RANGE = 'ERR_GOV_RANGE'
/** Most entries one read returns; callers page. */
export const MAX_PAGE = 1000

export interface LogOptions {
  db: GovernanceDb
  consortiumId: string
  signer: Signer
  /** Clock in Unix milliseconds (tests pin it). */
  now?: () => number
}

const TreeStateSchema = z.strictObject({
  size: z.number().int().nonnegative(),
  frontier: z.array(Hex32).max(64),
  lastTime: z.number().int().nonnegative(),
})
type TreeState = z.infer<typeof TreeStateSchema>

interface QueuedAppend {
  type: EntryType
  body: unknown
  jobId: string | undefined
  resolve(entry: LogEntry): void
  reject(e: Error): void
}

/** What the longest signature adds to an entry's encoding: `"signature":"<hex>",`. */
const SIGNATURE_FIELD_BYTES = '"signature":"",'.length + 2 * MAX_SIGNATURE_BYTES

/**
 * The canonical JSON of an entry, from that of the entry without its signature (`json`, keys in order): the
 * `signature` member goes right before `signer`, the key after it. The last `,"signer":` is the member's: only
 * the signer (a member record), time, type and v come after it, and none holds free text.
 */
function signedJson(json: string, signature: string): string {
  const at = json.lastIndexOf(',"signer":') + 1
  return `${json.slice(0, at)}"signature":"${signature}",${json.slice(at)}`
}

/**
 * An entry's members in canonical (sorted) order, written out rather than sorted: a log builds an entry
 * twice per append (without and with its signature). `body` and `signer` must be in canonical order already.
 */
function entryOf(e: UnsignedEntry, signature?: string): LogEntry {
  const { body, index, jobId, origin, signer, time, type, v } = e
  return {
    body,
    index,
    ...(jobId !== undefined ? { jobId } : {}),
    origin,
    ...(signature !== undefined ? { signature } : {}),
    signer,
    time,
    type,
    v,
  } as LogEntry
}

/**
 * This node's governance log: an append-only sequence of signed entries in its LevelDB store, hashed into an
 * RFC 6962 Merkle tree. Appends are serialised, so indices stay dense under concurrent callers, and each group
 * of concurrent appends commits its entries, new tree nodes and tree state in one atomic batch: a crash
 * leaves the log at the previous or the next size, never in between. The root is kept incrementally
 * (right-edge frontier); proofs read O(log n) stored perfect-subtree hashes.
 */
export class GovernanceLog {
  readonly origin: string
  readonly member: Member
  private readonly signerInOrder: Member
  private readonly store: GovernanceStore
  private readonly signer: Signer
  private readonly now: () => number
  private readonly mutex = new Mutex()
  private frontier: Frontier
  private lastTime: number
  private queued: QueuedAppend[] = []

  private constructor(
    store: GovernanceStore,
    origin: string,
    signer: Signer,
    now: () => number,
    frontier: Frontier,
    lastTime: number,
  ) {
    this.store = store
    this.origin = origin
    this.signer = signer
    this.member = signer.member
    this.signerInOrder = inCanonicalOrder(signer.member)
    this.now = now
    this.frontier = frontier
    this.lastTime = lastTime
  }

  static async open(options: LogOptions): Promise<GovernanceLog> {
    const store = openStore(options.db)
    const origin = originOf(options.consortiumId, options.signer.member.peerId)
    const raw = await store.get(STATE_KEY)
    let frontier = new Frontier()
    let lastTime = 0
    if (raw !== undefined) {
      try {
        const state = TreeStateSchema.parse(JSON.parse(fromUtf8(raw)))
        frontier = new Frontier(state.size, state.frontier.map(fromHex))
        lastTime = state.lastTime
      } catch (e) {
        throw new SyndicateError(
          ERR_GOV_STORE_CORRUPT,
          `the governance log state in the store is unreadable (${(e as Error).message}); restore the node's database from backup`,
        )
      }
    }
    return new GovernanceLog(store, origin, options.signer, options.now ?? Date.now, frontier, lastTime)
  }

  get size(): number {
    return this.frontier.size
  }

  /** The current root hash (MTH of all entries). */
  root(): Uint8Array {
    return this.frontier.root()
  }

  /**
   * Signs and appends an event. The entry, body included, is validated against its type's schema before it
   * takes an index; an invalid one rejects with ERR_GOV_ENTRY and nothing of it is written. Appends that arrive
   * while an earlier group is being written are committed together (group commit): one signature over the
   * group's Merkle root (governance/batch-sign.ts), then one atomic batch, and each caller's promise resolves
   * only once its entry is stored.
   */
  append<T extends EntryType>(type: T, body: BodyOf<T>, options: { jobId?: string } = {}): Promise<LogEntry> {
    if (!ENTRY_TYPES[type])
      return Promise.reject(
        new SyndicateError(ERR_GOV_ENTRY, `cannot log ${type}: unknown entry type`, { type }),
      )
    // The body is validated when its group commits (bodyProblem), once.
    return new Promise((resolve, reject) => {
      this.queued.push({ type, body, jobId: options.jobId, resolve, reject })
      // The first of a group schedules the commit; the rest join it until it takes the mutex.
      if (this.queued.length === 1) void this.mutex.runExclusive(() => this.commitQueued())
    })
  }

  private async commitQueued(): Promise<void> {
    const group = this.queued
    this.queued = []
    const next = this.frontier.clone()
    let time = this.lastTime
    const accepted: Array<{ unsigned: UnsignedEntry; json: string; item: QueuedAppend }> = []
    for (const item of group) {
      let unsigned: UnsignedEntry | undefined
      let json = ''
      let refused: string | undefined
      try {
        // Built in canonical key order once, so its encodings (signed, stored) are plain JSON.stringify.
        unsigned = entryOf({
          v: ENTRY_VERSION,
          index: next.size + accepted.length,
          time: Math.max(this.now(), time),
          origin: this.origin,
          type: item.type,
          jobId: item.jobId,
          body: inCanonicalOrder(item.body),
          signer: this.signerInOrder,
        })
        // Checked (the rest of the entry is built here) and measured with the longest signature before an
        // index is given away for good, so a refused entry leaves no gap in the indices of the entries signed
        // with it.
        refused = bodyProblem(item.type, item.jobId, unsigned.body)
        if (!refused) {
          json = JSON.stringify(unsigned)
          const size = Buffer.byteLength(json) + SIGNATURE_FIELD_BYTES
          if (size > MAX_ENTRY_BYTES)
            refused = `entry is ${size} bytes, over the ${MAX_ENTRY_BYTES}-byte limit`
        }
      } catch (e) {
        // A body that cannot even be walked (a cycle, a throwing getter) fails alone, like any refused one.
        refused = `the body cannot be encoded (${(e as Error).message})`
      }
      if (refused || !unsigned) {
        item.reject(
          new SyndicateError(ERR_GOV_ENTRY, `cannot log ${item.type}: ${refused}`, { type: item.type }),
        )
        continue
      }
      time = unsigned.time
      accepted.push({ unsigned, json, item })
    }
    if (accepted.length === 0) return
    try {
      // One signature for the group (its entries' Merkle root), each entry carrying its path to it.
      const signatures = await signMessages(
        (m) => this.signer.sign(m),
        accepted.map(({ json }) => utf8(ENTRY_SIGNING_PREFIX + json)),
      )
      const entries: LogEntry[] = []
      const ops: Array<{ type: 'put'; key: string; value: Uint8Array }> = []
      for (const [i, { unsigned, json }] of accepted.entries()) {
        const signature = toHex(signatures[i])
        entries.push(entryOf(unsigned, signature))
        // Canonical: keys in order, no undefined members, finite numbers only (the schemas admit no others).
        const bytes = utf8(signedJson(json, signature))
        ops.push({ type: 'put', key: entryKey(unsigned.index), value: bytes })
        for (const n of next.append(leafHash(bytes)))
          ops.push({ type: 'put', key: nodeKey(n.level, n.index), value: n.hash })
      }
      const state: TreeState = { size: next.size, frontier: next.hashes.map(toHex), lastTime: time }
      ops.push({ type: 'put', key: STATE_KEY, value: utf8(JSON.stringify(state)) })
      await this.store.batch(ops)
      this.frontier = next
      this.lastTime = time
      for (const [i, { item }] of accepted.entries()) item.resolve(entries[i])
    } catch (e) {
      for (const { item } of accepted) item.reject(e as Error)
    }
  }

  private checkRange(start: number, end: number, limit = this.size): void {
    if (
      !Number.isSafeInteger(start) ||
      !Number.isSafeInteger(end) ||
      start < 0 ||
      start > end ||
      end > limit
    ) {
      throw new SyndicateError(ERR_GOV_RANGE, `range [${start}, ${end}) is outside the log (size ${limit})`, {
        start,
        end,
        size: limit,
      })
    }
  }

  /** Stored bytes of entries [start, end), as they are, without checks (export and replication). */
  async rawEntries(start: number, end: number): Promise<Uint8Array[]> {
    this.checkRange(start, end)
    const out: Uint8Array[] = []
    for await (const value of this.store.values({ gte: entryKey(start), lt: entryKey(end) })) out.push(value)
    if (out.length !== end - start) {
      throw new SyndicateError(ERR_GOV_STORE_CORRUPT, `entries [${start}, ${end}) are missing from the store`)
    }
    return out
  }

  /** Entries [start, end), each checked against its stored leaf hash; a mismatch names the index. */
  async entries(start: number, end: number): Promise<LogEntry[]> {
    this.checkRange(start, end)
    if (end - start > MAX_PAGE) {
      throw new SyndicateError(ERR_GOV_RANGE, `ask for at most ${MAX_PAGE} entries at a time`, { start, end })
    }
    const raw = await this.rawEntries(start, end)
    const leaves = await this.readNodes(raw.map((_, i) => ({ level: 0, index: start + i })))
    return raw.map((bytes, i) => {
      const decoded = decodeEntry(bytes)
      if (!decoded.ok || !bytesEqual(leafHash(bytes), leaves[i]) || decoded.entry.index !== start + i) {
        throw new SyndicateError(
          ERR_GOV_STORE_CORRUPT,
          `entry ${start + i} in the store does not match the log's tree${decoded.ok ? '' : ` (${decoded.reason})`}`,
          { index: start + i },
        )
      }
      return decoded.entry
    })
  }

  private readNodes = async (ids: readonly NodeId[]): Promise<Uint8Array[]> => {
    const values = await this.store.getMany(ids.map((id) => nodeKey(id.level, id.index)))
    return values.map((v, i) => {
      if (v === undefined || v.byteLength !== 32) {
        throw new SyndicateError(
          ERR_GOV_STORE_CORRUPT,
          `tree node ${ids[i].level}/${ids[i].index} is missing from the store; restore the node's database`,
        )
      }
      return v
    })
  }

  /** MTH of the first `size` entries. */
  async rootAt(size: number): Promise<Uint8Array> {
    this.checkRange(0, size)
    if (size === this.size) return this.root()
    const [root] = await hashRanges([{ start: 0, end: size }], this.readNodes)
    return root
  }

  /** The leaf hash of entry `index` and its RFC 6962 inclusion proof in the tree of size `size`. */
  async inclusionProof(
    index: number,
    size = this.size,
  ): Promise<{ leafHash: Uint8Array; proof: Uint8Array[] }> {
    this.checkRange(0, size)
    this.checkRange(index, index + 1, size)
    const [leaf] = await this.readNodes([{ level: 0, index }])
    return { leafHash: leaf, proof: await hashRanges(inclusionProofRanges(index, size), this.readNodes) }
  }

  /** RFC 6962 consistency proof between the trees of sizes `from` and `to`. */
  async consistencyProof(from: number, to = this.size): Promise<Uint8Array[]> {
    this.checkRange(from, to)
    return hashRanges(consistencyProofRanges(from, to), this.readNodes)
  }

  /**
   * Signs a checkpoint of the current tree and stores it; if the tree has not grown since the latest
   * checkpoint, that one is returned (with whatever cosignatures it has collected).
   */
  checkpoint(): Promise<string> {
    return this.mutex.runExclusive(async () => {
      const existing = await this.store.get(checkpointKey(this.size))
      if (existing !== undefined) return fromUtf8(existing)
      const cp: Checkpoint = {
        origin: this.origin,
        size: this.size,
        root: this.root(),
        timestamp: Math.max(this.now(), this.lastTime),
      }
      const note = await signCheckpoint(cp, this.signer)
      await this.store.put(checkpointKey(cp.size), utf8(note))
      return note
    })
  }

  async latestCheckpoint(): Promise<string | undefined> {
    for await (const value of this.store.values({ ...prefixRange('c/'), reverse: true, limit: 1 })) {
      return fromUtf8(value)
    }
    return undefined
  }

  async checkpointAt(size: number): Promise<string | undefined> {
    const v = await this.store.get(checkpointKey(size))
    return v === undefined ? undefined : fromUtf8(v)
  }

  /** Every stored checkpoint note, oldest first. */
  async checkpoints(): Promise<string[]> {
    const out: string[] = []
    for await (const value of this.store.values(prefixRange('c/'))) out.push(fromUtf8(value))
    return out
  }

  /**
   * Stores a witness's cosignature with the checkpoint it signed. `cosigned` is the checkpoint note with the
   * witness's line(s); only lines that verify against `members` are kept. Returns the merged, verified note.
   */
  addCosignatures(cosigned: string, members: readonly Member[]): Promise<VerifiedCheckpoint> {
    return this.mutex.runExclusive(async () => {
      const dir = memberDirectory(members)
      const incoming = verifyCheckpointNote(cosigned, dir)
      const ours = await this.store.get(checkpointKey(incoming.checkpoint.size))
      if (ours === undefined || incoming.checkpoint.origin !== this.origin) {
        throw new SyndicateError(
          ERR_GOV_RANGE,
          `no checkpoint of ${this.origin} at size ${incoming.checkpoint.size}`,
        )
      }
      const stored = verifyCheckpointNote(fromUtf8(ours), dir)
      if (stored.body !== incoming.body) {
        throw new SyndicateError(
          ERR_GOV_RANGE,
          'the cosigned checkpoint is not the one this log signed at that size',
        )
      }
      const lines = incoming.note.slice(incoming.note.lastIndexOf('\n\n') + 2).split('\n')
      const merged = verifyCheckpointNote(addSignatureLines(stored.note, lines), dir)
      await this.store.put(checkpointKey(merged.checkpoint.size), utf8(merged.note))
      return merged
    })
  }
}
