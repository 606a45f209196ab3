import { z } from 'zod'
import { type VerifiedCheckpoint, verifyCheckpointNote } from './checkpoint.ts'
import { parseOrigin } from './entry.ts'
import { fromHex, type Member } from './keys.ts'
import { bytesEqual, verifyConsistency } from './merkle.ts'

/** Witness evidence carried in audit bundles, and the check that it holds up on its own. */

const EvidenceSchema = z.object({
  origin: z.string().max(200),
  kind: z.enum(['same-size-different-root', 'consistency-proof-failed']),
  earlier: z.string().max(64 * 1024),
  later: z.string().max(64 * 1024),
  proof: z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(128),
})

export interface CheckedEvidence {
  bundle: number
  holder: string
  origin: string
  kind: 'same-size-different-root' | 'consistency-proof-failed'
  earlier: VerifiedCheckpoint
  later: VerifiedCheckpoint
}

/** Keeps the evidence that holds up: both checkpoints signed by the accused owner, and the claim reproduces. */
export function collectEvidence(
  bundles: ReadonlyArray<{ origin: string; evidence: unknown[] } | undefined>,
  directory: ReadonlyMap<string, Member>,
  warnings: string[],
): CheckedEvidence[] {
  const out: CheckedEvidence[] = []
  bundles.forEach((b, bundle) => {
    for (const raw of b?.evidence ?? []) {
      const ev = EvidenceSchema.safeParse(raw)
      let holds = false
      if (ev.success) {
        try {
          const earlier = verifyCheckpointNote(ev.data.earlier, directory)
          const later = verifyCheckpointNote(ev.data.later, directory)
          const [x, y] = [earlier.checkpoint, later.checkpoint]
          holds =
            x.origin === ev.data.origin &&
            y.origin === ev.data.origin &&
            (ev.data.kind === 'same-size-different-root'
              ? x.size === y.size && !bytesEqual(x.root, y.root)
              : x.size < y.size &&
                !verifyConsistency(x.size, y.size, ev.data.proof.map(fromHex), x.root, y.root))
          if (holds) {
            const holder = directory.get(parseOrigin(b!.origin).peerId)?.name ?? b!.origin
            out.push({ bundle, holder, origin: ev.data.origin, kind: ev.data.kind, earlier, later })
          }
        } catch {
          holds = false
        }
      }
      if (!holds) warnings.push(`${b!.origin}: a piece of witness evidence does not hold up and was ignored`)
    }
  })
  return out
}

/** Locates an altered entry inside a segment whose root did not match. */
