import { z } from 'zod'
import { parseCheckpointBody, parseNote } from './checkpoint.ts'
import { type Member, MemberSchema, toHex } from './keys.ts'
import { type GovernanceLog, MAX_PAGE } from './log.ts'
import type { Evidence, Witness } from './witness.ts'

/**
 * The audit bundle: everything an auditor needs to check one member's log offline, in one JSON document.
 * Entries are exported as they are stored (a corrupted one is exported too, as text, for the verifier to
 * name); checkpoints as signed notes with their cosignatures; consistency proofs between consecutive
 * checkpoints as the log serves them; and the consortium members' keys the signatures are checked with.
 */

export const BUNDLE_FORMAT = 'syndicate-audit-bundle/v1'

export const BundleSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  exportedAt: z.number().int().nonnegative(),
  origin: z.string().max(200),
  members: z.array(MemberSchema).min(1).max(512),
  entries: z.array(z.unknown()),
  checkpoints: z.array(z.string().max(64 * 1024)).max(1_000_000),
  proofs: z
    .array(
      z.strictObject({ from: z.number().int(), to: z.number().int(), proof: z.array(z.string()).max(128) }),
    )
    .max(1_000_000),
  /** Inconsistencies this member's witness found in other members' logs. */
  evidence: z.array(z.unknown()).max(10_000).default([]),
})
export type Bundle = z.infer<typeof BundleSchema>

export interface ExportOptions {
  log: GovernanceLog
  members: readonly Member[]
  witness?: Witness
  now?: () => number
}

export async function exportBundle(options: ExportOptions): Promise<Bundle> {
  const { log } = options
  const entries: unknown[] = []
  const decoder = new TextDecoder()
  for (let start = 0; start < log.size; start += MAX_PAGE) {
    for (const bytes of await log.rawEntries(start, Math.min(log.size, start + MAX_PAGE))) {
      const text = decoder.decode(bytes)
      try {
        entries.push(JSON.parse(text))
      } catch {
        entries.push(text)
      }
    }
  }
  const checkpoints = await log.checkpoints()
  const sizes = checkpoints.map((n) => parseCheckpointBody(parseNote(n).body).size)
  const proofs: Bundle['proofs'] = []
  for (let i = 0; i + 1 < sizes.length; i++) {
    const proof = await log.consistencyProof(sizes[i], sizes[i + 1])
    proofs.push({ from: sizes[i], to: sizes[i + 1], proof: proof.map(toHex) })
  }
  const evidence: Evidence[] = options.witness ? await options.witness.evidence() : []
  return {
    format: BUNDLE_FORMAT,
    exportedAt: (options.now ?? Date.now)(),
    origin: log.origin,
    members: [...options.members],
    entries,
    checkpoints,
    proofs,
    evidence,
  }
}
