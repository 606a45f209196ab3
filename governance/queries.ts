import { z } from 'zod'
import { SyndicateError } from '../crypto/errors.ts'
import { memberDirectory, verifyCheckpointNote } from './checkpoint.ts'
import type { LogEntry } from './entry.ts'
import { type Member, toHex } from './keys.ts'
import { ERR_GOV_RANGE, type GovernanceLog, MAX_PAGE } from './log.ts'

/**
 * The auditor's queries, as functions from (log, untrusted parameters) to JSON-ready answers. The node mounts
 * them over HTTP; every answer can be checked by the auditor against a signed checkpoint.
 */

export const ERR_GOV_QUERY = 'ERR_GOV_QUERY'

const Index = z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

function parse<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const r = schema.safeParse(input)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new SyndicateError(
      ERR_GOV_QUERY,
      `invalid query: ${issue.path.join('.') || 'parameters'}: ${issue.message}`,
    )
  }
  return r.data
}

export interface CheckpointAnswer {
  origin: string
  size: number
  root: string
  timestamp: number
  /** The signed note: checkpoint body, the owner's signature line and the witnesses' cosignature lines. */
  note: string
  cosigners: Array<{ name: string; peerId: string; timestamp: number }>
}

async function latestVerified(
  log: GovernanceLog,
  members: readonly Member[],
): Promise<CheckpointAnswer | undefined> {
  const note = await log.latestCheckpoint()
  if (note === undefined) return undefined
  const v = verifyCheckpointNote(note, memberDirectory(members))
  return {
    origin: v.checkpoint.origin,
    size: v.checkpoint.size,
    root: toHex(v.checkpoint.root),
    timestamp: v.checkpoint.timestamp,
    note: v.note,
    cosigners: v.cosigners.map((c) => ({
      name: c.member.name,
      peerId: c.member.peerId,
      timestamp: c.timestamp,
    })),
  }
}

/** The latest signed checkpoint with its cosignatures. */
export async function queryCheckpoint(
  log: GovernanceLog,
  members: readonly Member[],
): Promise<CheckpointAnswer> {
  const cp = await latestVerified(log, members)
  if (!cp) throw new SyndicateError(ERR_GOV_RANGE, `${log.origin} has not signed a checkpoint yet`)
  return cp
}

/** Entries [start, end), at most MAX_PAGE (end defaults to start + MAX_PAGE, capped at the log size). */
export async function queryEntries(
  log: GovernanceLog,
  params: { start?: unknown; end?: unknown },
): Promise<{ origin: string; size: number; start: number; end: number; entries: LogEntry[] }> {
  const { start, end } = parse(z.object({ start: Index.default(0), end: Index.optional() }), params)
  const stop = Math.min(end ?? start + MAX_PAGE, log.size)
  if (start > stop)
    throw new SyndicateError(ERR_GOV_RANGE, `start ${start} is past the end of the log (size ${log.size})`)
  if (stop - start > MAX_PAGE)
    throw new SyndicateError(ERR_GOV_QUERY, `ask for at most ${MAX_PAGE} entries at a time`)
  return { origin: log.origin, size: log.size, start, end: stop, entries: await log.entries(start, stop) }
}

/**
 * An entry with its inclusion proof in the tree of `size` (default: the latest checkpoint's size, so the
 * auditor verifies it against a signed root).
 */
export async function queryInclusion(
  log: GovernanceLog,
  members: readonly Member[],
  params: { index?: unknown; size?: unknown },
): Promise<{
  origin: string
  index: number
  size: number
  entry: LogEntry
  leafHash: string
  proof: string[]
}> {
  const { index, size } = parse(z.object({ index: Index, size: Index.optional() }), params)
  const treeSize = size ?? (await latestVerified(log, members))?.size ?? log.size
  if (index >= treeSize) {
    throw new SyndicateError(
      ERR_GOV_RANGE,
      `entry ${index} is not in the tree of size ${treeSize}; ask with a larger size`,
    )
  }
  const [entry] = await log.entries(index, index + 1)
  const p = await log.inclusionProof(index, treeSize)
  return {
    origin: log.origin,
    index,
    size: treeSize,
    entry,
    leafHash: toHex(p.leafHash),
    proof: p.proof.map(toHex),
  }
}

/** The consistency proof between tree sizes `from` and `to` (default: the current size), with both roots. */
export async function queryConsistency(
  log: GovernanceLog,
  params: { from?: unknown; to?: unknown },
): Promise<{ origin: string; from: number; to: number; fromRoot: string; toRoot: string; proof: string[] }> {
  const { from, to } = parse(z.object({ from: Index, to: Index.optional() }), params)
  const until = to ?? log.size
  const proof = await log.consistencyProof(from, until)
  return {
    origin: log.origin,
    from,
    to: until,
    fromRoot: toHex(await log.rootAt(from)),
    toRoot: toHex(await log.rootAt(until)),
    proof: proof.map(toHex),
  }
}
