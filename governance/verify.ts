import { createHash } from 'node:crypto'
import { canonicalBytes } from '../crypto/canonical.ts'
import { verifyBatchSignature, verifyBatchSignatureAsync } from './batch-sign.ts'
import { BundleSchema } from './bundle.ts'
import { memberDirectory, type VerifiedCheckpoint, verifyCheckpointNote } from './checkpoint.ts'
import { checkEntry, entrySigningBytes, type LogEntry, Origin, parseOrigin } from './entry.ts'
import { collectEvidence } from './evidence-check.ts'
import { crossCheckJobs, type Failure, type LogState, recordJob } from './jobs-check.ts'
import { fromHex, type Member, memberFrom, toHex } from './keys.ts'
import { bytesEqual, EMPTY_ROOT, Frontier, leafHash, verifyConsistency } from './merkle.ts'

/**
 * Offline verification of audit bundles: one bundle per member log, checked on its own (schema, dense
 * indices, owner signatures, Merkle roots against signed checkpoints, served consistency proofs,
 * cosignatures) and then against each other (the parties of a job must tell the same story: same spec hash,
 * same votes, same result). Pure: data in, report out.
 */

export interface VerifyOptions {
  /**
   * 'checkpoints' (default): an entry covered by a verified checkpoint is authenticated by the owner's
   * signature on the Merkle root over it (SHA-256 binds the root to every entry byte), so only entries after
   * the last checkpoint, and those of a segment whose root does not match, have their own signatures checked.
   * 'all': every entry's own signature is checked as well.
   */
  signatures?: 'checkpoints' | 'all'
  /** The members the auditor trusts (from the consortium document); every bundle's member list must agree. */
  trustedMembers?: readonly Member[]
  /** Checkpoints the auditor verified earlier (signed notes); each bundle must extend them. */
  previousCheckpoints?: readonly string[]
  /** Fail a log whose latest checkpoint has fewer witness cosignatures than this. */
  minCosignatures?: number
}

export type { Failure }

export interface LogSummary {
  bundle: number
  origin: string
  owner: string
  entries: number
  checkpoints: number
  latestSize: number
  latestRoot: string
  cosigners: string[]
  signaturesVerified: number
  coveredByCheckpoint: number
  ok: boolean
}

export interface VerifyReport {
  ok: boolean
  /** Human-readable lines, one per check performed. */
  checks: string[]
  warnings: string[]
  logs: LogSummary[]
  membersFingerprint?: string
  jobs: { total: number; sharedAcrossLogs: number }
  failures: Failure[]
  seconds: number
  entriesPerSecond: number
}

const SIGNATURE_WINDOW = 512

export async function verifyBundles(
  bundles: readonly unknown[],
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const t0 = performance.now()
  const checks: string[] = []
  const warnings: string[] = []
  const failures: Failure[] = []
  const logs: LogSummary[] = []
  const states: LogState[] = []
  let totalEntries = 0

  const parsed = bundles.map((b, i) => {
    const r = BundleSchema.safeParse(b)
    if (!r.success) {
      const issue = r.error.issues[0]
      failures.push({ bundle: i, reason: `not an audit bundle: ${issue.path.join('.')}: ${issue.message}` })
      return undefined
    }
    return r.data
  })

  // Members: each key must match its peer id, bundles must agree with each other and with the trusted list.
  const members = new Map<string, Member>()
  const trusted = options.trustedMembers ? memberDirectory(options.trustedMembers.map(memberFrom)) : undefined
  parsed.forEach((b, i) => {
    if (!b) return
    for (const m of b.members) {
      try {
        memberFrom(m)
      } catch (e) {
        failures.push({ bundle: i, origin: b.origin, reason: (e as Error).message })
        continue
      }
      const known = members.get(m.peerId) ?? trusted?.get(m.peerId)
      if (trusted && !trusted.has(m.peerId)) {
        failures.push({
          bundle: i,
          origin: b.origin,
          reason: `member ${m.name} (${m.peerId}) is not in the trusted list`,
        })
      } else if (known && known.publicKey !== m.publicKey) {
        failures.push({
          bundle: i,
          origin: b.origin,
          reason: `member ${m.peerId} has two different public keys`,
        })
      } else {
        members.set(m.peerId, m)
      }
    }
  })
  // With a trusted list, that list is the directory: a bundle cannot add or drop keys.
  const directory = trusted ?? memberDirectory([...members.values()])
  const fingerprint = createHash('sha256')
    .update(canonicalBytes([...directory.values()].sort((a, b) => (a.peerId < b.peerId ? -1 : 1))))
    .digest('hex')
  checks.push(
    `members: ${directory.size} keys, each bound to its peer id${trusted ? ', from the trusted list' : ''}; member set fingerprint ${fingerprint}`,
  )

  const previous: VerifiedCheckpoint[] = []
  for (const note of options.previousCheckpoints ?? []) {
    try {
      previous.push(verifyCheckpointNote(note, directory))
    } catch (e) {
      failures.push({
        bundle: -1,
        reason: `a previously seen checkpoint does not verify: ${(e as Error).message}`,
      })
    }
  }

  // Witness evidence carried by the bundles: its checkpoints join the known ones, so the accused log's own
  // bundle (if present) is checked against them too.
  const evidence = collectEvidence(parsed, directory, warnings)
  for (const ev of evidence) previous.push(ev.earlier, ev.later)
  if (evidence.length > 0)
    checks.push(`evidence: ${evidence.length} signed witness report(s) of inconsistent logs checked`)

  const verifiedOrigins = new Set<string>()
  for (const [i, b] of parsed.entries()) {
    if (!b || failures.some((f) => f.bundle === i)) continue
    const result = await verifyLog(i, b.origin, b, directory, previous, options)
    if (!result.failure) verifiedOrigins.add(b.origin)
    totalEntries += b.entries.length
    checks.push(...result.checks)
    warnings.push(...result.warnings)
    if (result.failure) failures.push(result.failure)
    if (result.summary) logs.push(result.summary)
    if (!result.failure) states.push(result.state)
  }

  for (const ev of evidence) {
    const accused = parsed.findIndex((b) => b?.origin === ev.origin)
    const what = `${ev.holder}'s witness holds ${ev.origin}'s signed checkpoints of sizes ${ev.earlier.checkpoint.size} and ${ev.later.checkpoint.size}`
    if (ev.kind === 'same-size-different-root') {
      failures.push({
        bundle: accused >= 0 ? accused : ev.bundle,
        origin: ev.origin,
        reason: `${what} with different roots: the log forked`,
      })
    } else if (verifiedOrigins.has(ev.origin)) {
      warnings.push(
        `${what}; the log served a consistency proof that failed, but its exported history matches both`,
      )
    } else if (accused < 0) {
      failures.push({
        bundle: ev.bundle,
        origin: ev.origin,
        reason: `${what} and a consistency proof between them that fails; verify that log's bundle to settle it`,
      })
    }
  }

  const origins = new Set<string>()
  for (const s of states) {
    if (origins.has(s.origin))
      failures.push({ bundle: s.bundle, origin: s.origin, reason: 'two bundles of the same log' })
    origins.add(s.origin)
  }
  const jobs = crossCheckJobs(states, failures, warnings)
  if (states.length > 1) {
    checks.push(
      `jobs: ${jobs.total} job ids, ${jobs.sharedAcrossLogs} recorded in more than one log, cross-checked`,
    )
  }
  failures.sort((a, b) => a.bundle - b.bundle || (a.index ?? -1) - (b.index ?? -1))
  const seconds = (performance.now() - t0) / 1000
  return {
    ok: failures.length === 0,
    checks,
    warnings,
    logs,
    membersFingerprint: fingerprint,
    jobs,
    failures,
    seconds,
    entriesPerSecond: seconds > 0 ? totalEntries / seconds : 0,
  }
}

interface LogResult {
  checks: string[]
  warnings: string[]
  failure?: Failure
  summary?: LogSummary
  state: LogState
}

async function verifyLog(
  bundle: number,
  origin: string,
  b: {
    entries: unknown[]
    checkpoints: string[]
    proofs: Array<{ from: number; to: number; proof: string[] }>
  },
  directory: Map<string, Member>,
  previous: readonly VerifiedCheckpoint[],
  options: VerifyOptions,
): Promise<LogResult> {
  const checks: string[] = []
  const warnings: string[] = []
  const state: LogState = { bundle, origin, jobs: new Map() }
  const fail = (reason: string, index?: number): LogResult => ({
    checks,
    warnings,
    state,
    failure: { bundle, origin, ...(index !== undefined ? { index } : {}), reason },
  })
  if (!Origin.safeParse(origin).success) return fail(`"${origin}" is not a log origin`)
  const owner = directory.get(parseOrigin(origin).peerId)
  if (!owner) return fail('the log owner is not a consortium member')

  // Checkpoints: owner signature, cosignatures, one root per size, all within the exported entries.
  const cps = new Map<number, VerifiedCheckpoint>()
  for (const note of b.checkpoints) {
    let v: VerifiedCheckpoint
    try {
      v = verifyCheckpointNote(note, directory)
    } catch (e) {
      return fail(`checkpoint: ${(e as Error).message}`)
    }
    if (v.checkpoint.origin !== origin)
      return fail(`a checkpoint of ${v.checkpoint.origin} is in the bundle of ${origin}`)
    const same = cps.get(v.checkpoint.size)
    if (same && !bytesEqual(same.checkpoint.root, v.checkpoint.root)) {
      return fail(`two checkpoints of size ${v.checkpoint.size} with different roots: the log forked`)
    }
    if (v.checkpoint.size > b.entries.length) {
      return fail(
        `checkpoint at size ${v.checkpoint.size} but the bundle has only ${b.entries.length} entries`,
      )
    }
    cps.set(v.checkpoint.size, v)
  }
  for (const p of previous) {
    if (p.checkpoint.origin !== origin) continue
    if (p.checkpoint.size > b.entries.length) {
      return fail(
        `the bundle has ${b.entries.length} entries, fewer than the ${p.checkpoint.size} seen before`,
      )
    }
    const same = cps.get(p.checkpoint.size)
    if (same && !bytesEqual(same.checkpoint.root, p.checkpoint.root)) {
      return fail(
        `the checkpoint at size ${p.checkpoint.size} differs from the one seen before (by the auditor or a witness): the log forked`,
      )
    }
    if (!same) cps.set(p.checkpoint.size, p)
  }
  const sizes = [...cps.keys()].sort((x, y) => x - y)
  const covered = sizes.length > 0 ? sizes[sizes.length - 1] : 0
  const checkAll = options.signatures === 'all'

  // Entries, streamed: schema, index, origin, signer, time, leaf hash into the tree, roots at checkpoints.
  const frontier = new Frontier()
  const signed: LogEntry[] = []
  let pending: Array<Promise<number | undefined>> = []
  let badSignature: number | undefined
  const flush = async () => {
    for (const bad of await Promise.all(pending)) {
      if (bad !== undefined && (badSignature === undefined || bad < badSignature)) badSignature = bad
    }
    pending = []
  }
  let verifiedSignatures = 0
  let nextCp = 0
  let segmentStart = 0
  let lastTime = 0
  if (sizes[0] === 0) {
    if (!bytesEqual(cps.get(0)!.checkpoint.root, EMPTY_ROOT))
      return fail('the checkpoint at size 0 is not the empty tree')
    nextCp = 1
  }
  // A contradiction found at entry i may be the effect of an altered earlier entry that no checkpoint has
  // vouched for yet: name the altered one first.
  const failAt = (reason: string, i: number): LogResult => {
    const bad = firstBadSignature(signed, segmentStart, signed.length + segmentStart, owner.publicKey)
    return bad !== undefined && bad < i
      ? fail('the entry signature does not verify (the entry was altered)', bad)
      : fail(reason, i)
  }
  for (let i = 0; i < b.entries.length; i++) {
    const checked = checkEntry(b.entries[i])
    if (!checked.ok) return failAt(checked.reason, i)
    const e = checked.entry
    if (e.index !== i) return failAt(`entry at position ${i} claims index ${e.index}`, i)
    if (e.origin !== origin) return failAt(`entry belongs to ${e.origin}`, i)
    const signer = directory.get(e.signer.peerId)
    if (!signer || signer.publicKey !== e.signer.publicKey) {
      return failAt(`signed by ${e.signer.name} (${e.signer.peerId}), whose key is not a member's`, i)
    }
    if (signer.peerId !== owner.peerId)
      return failAt(`signed by ${signer.name}, not by the log owner ${owner.name}`, i)
    if (e.time < lastTime) return failAt(`time goes backwards (${e.time} < ${lastTime})`, i)
    lastTime = e.time
    const jobFailure = recordJob(state, e)
    if (jobFailure) return failAt(jobFailure, i)
    if (checkAll || i >= covered) {
      verifiedSignatures++
      const index = i
      pending.push(
        verifyBatchSignatureAsync(owner.publicKey, entrySigningBytes(e), fromHex(e.signature)).then((ok) =>
          ok ? undefined : index,
        ),
      )
      if (pending.length >= SIGNATURE_WINDOW) await flush()
    }
    signed.push(e)
    frontier.append(leafHash(checked.bytes))
    while (nextCp < sizes.length && sizes[nextCp] === frontier.size) {
      const cp = cps.get(sizes[nextCp])!
      if (!bytesEqual(frontier.root(), cp.checkpoint.root)) {
        const bad = firstBadSignature(signed, segmentStart, frontier.size, owner.publicKey)
        return bad !== undefined
          ? fail('the entry signature does not verify (the entry was altered)', bad)
          : fail(
              `entries [${segmentStart}, ${frontier.size}) do not hash to the root the owner signed at size ${frontier.size}`,
              segmentStart,
            )
      }
      segmentStart = frontier.size
      nextCp++
      // Entries below a verified checkpoint need not stay in memory.
      signed.length = 0
    }
  }
  await flush()
  if (badSignature !== undefined) return fail('the entry signature does not verify', badSignature)
  if (sizes.length === 0 && b.entries.length > 0) {
    warnings.push(`${origin}: no checkpoint; entries are authenticated by their own signatures only`)
  }

  // The consistency proofs the log served between its checkpoints must verify against the signed roots.
  for (const p of b.proofs) {
    const a = cps.get(p.from)
    const z = cps.get(p.to)
    if (!a || !z) return fail(`a consistency proof from ${p.from} to ${p.to} names a size without checkpoint`)
    if (!p.proof.every((h) => /^[0-9a-f]{64}$/.test(h))) return fail('a consistency proof is not hex hashes')
    if (!verifyConsistency(p.from, p.to, p.proof.map(fromHex), a.checkpoint.root, z.checkpoint.root)) {
      return fail(`the log's consistency proof from size ${p.from} to ${p.to} does not verify`)
    }
  }

  const latest = sizes.length > 0 ? cps.get(sizes[sizes.length - 1])! : undefined
  const cosigners = latest?.cosigners.map((c) => c.member.name) ?? []
  if (options.minCosignatures !== undefined && cosigners.length < options.minCosignatures) {
    return fail(
      `the latest checkpoint has ${cosigners.length} cosignatures, fewer than ${options.minCosignatures}`,
    )
  }
  if (latest && cosigners.length === 0)
    warnings.push(`${origin}: the latest checkpoint has no witness cosignature`)
  const cosigTotal = [...cps.values()].reduce((n, c) => n + c.cosigners.length, 0)
  checks.push(
    `${origin} (${owner.name}): ${b.entries.length} entries well-formed, dense and signed by the owner's key; ` +
      `${sizes.length} checkpoints signed by the owner, roots recomputed from the entries; ` +
      `${b.proofs.length} consistency proofs verified; ${cosigTotal} witness cosignatures verified` +
      (latest ? ` (latest, size ${latest.checkpoint.size}: ${cosigners.join(', ') || 'none'})` : '') +
      `; ${verifiedSignatures} entry signatures checked individually, ${checkAll ? 0 : Math.min(covered, b.entries.length)} through checkpoints`,
  )
  return {
    checks,
    warnings,
    state,
    summary: {
      bundle,
      origin,
      owner: owner.name,
      entries: b.entries.length,
      checkpoints: sizes.length,
      latestSize: latest?.checkpoint.size ?? 0,
      latestRoot: toHex(latest?.checkpoint.root ?? frontier.root()),
      cosigners,
      signaturesVerified: verifiedSignatures,
      coveredByCheckpoint: checkAll ? 0 : covered,
      ok: true,
    },
  }
}

function firstBadSignature(
  entries: readonly LogEntry[],
  start: number,
  end: number,
  publicKey: string,
): number | undefined {
  for (let i = start; i < end; i++) {
    const e = entries[i - start]
    if (!verifyBatchSignature(publicKey, entrySigningBytes(e), fromHex(e.signature))) return i
  }
  return undefined
}

/** Collects a job's story from one log; returns a reason when the log contradicts itself. */
