import { createHash } from 'node:crypto'
import { canonicalBytes, signingBytes } from '../crypto/canonical.ts'
import { type LogEntry, parseOrigin } from './entry.ts'
import { verifySignature } from './keys.ts'

/** The domain enclaves sign their "destroyed" records under (enclave/runtime/engine.ts DESTROYED_DOMAIN). */
const DESTROYED_DOMAIN = 'enclave/destroyed/v1'

/**
 * The story of each job as the logs tell it, and the check that the parties' logs agree: same spec hash,
 * the same vote for every voter two logs both recorded, the same result and model hash, and for enclave jobs
 * the same "destroyed" record, signed by the enclave key it names.
 */

/** A verification failure: which bundle (input position), its log, and the first bad entry if any. */
export interface Failure {
  bundle: number
  origin?: string
  /** The index of the first bad entry, when the failure is about an entry. */
  index?: number
  reason: string
}

export interface JobView {
  specHash?: { value: string; index: number }
  parties?: string[]
  votes: Map<string, { decision: string; index: number }>
  result?: { modelHash?: string; resultHash?: string; index: number }
  /** Digest of the enclave's signed "destroyed" record (record, key and signature). */
  destroyed?: { digest: string; index: number }
}

export interface LogState {
  bundle: number
  origin: string
  jobs: Map<string, JobView>
}

export function recordJob(state: LogState, e: LogEntry): string | undefined {
  if (e.jobId === undefined) return undefined
  const body = e.body as {
    specHash?: string
    parties?: string[]
    voter?: string
    decision?: string
    modelHash?: string
    resultHash?: string
  }
  let job = state.jobs.get(e.jobId)
  if (!job) {
    job = { votes: new Map() }
    state.jobs.set(e.jobId, job)
  }
  if (body.specHash !== undefined) {
    if (job.specHash && job.specHash.value !== body.specHash) {
      return `job ${e.jobId}: spec hash ${body.specHash} differs from ${job.specHash.value} in entry ${job.specHash.index}`
    }
    job.specHash ??= { value: body.specHash, index: e.index }
  }
  if (e.type === 'job.propose') job.parties = body.parties
  if (e.type === 'job.vote' && body.voter && body.decision) {
    const prior = job.votes.get(body.voter)
    if (prior && prior.decision !== body.decision) {
      return `job ${e.jobId}: ${body.voter} voted ${body.decision} after ${prior.decision} (entry ${prior.index})`
    }
    job.votes.set(body.voter, { decision: body.decision, index: e.index })
  }
  if (e.type === 'enclave.destroyed') {
    const d = e.body as { record: unknown; enclaveKey: string; signature: string }
    const signed = verifySignature(
      d.enclaveKey.slice(64),
      signingBytes(DESTROYED_DOMAIN, d.record),
      Buffer.from(d.signature, 'base64'),
    )
    if (!signed)
      return `job ${e.jobId}: the enclave's "destroyed" record is not signed by the enclave key it names`
    const digest = createHash('sha256').update(canonicalBytes(d)).digest('hex')
    if (job.destroyed && job.destroyed.digest !== digest)
      return `job ${e.jobId}: a second, different "destroyed" record (the first is entry ${job.destroyed.index})`
    job.destroyed ??= { digest, index: e.index }
  }
  if (e.type === 'job.result') {
    if (job.result) return `job ${e.jobId}: a second result (the first is entry ${job.result.index})`
    job.result = { modelHash: body.modelHash, resultHash: body.resultHash, index: e.index }
  }
  return undefined
}

/** The parties of a job must agree on its spec, on every vote both recorded, and on the result. */
export function crossCheckJobs(states: readonly LogState[], failures: Failure[], warnings: string[]) {
  const ids = new Set(states.flatMap((s) => [...s.jobs.keys()]))
  let shared = 0
  for (const id of ids) {
    const views = states.filter((s) => s.jobs.has(id)).map((s) => ({ s, job: s.jobs.get(id)! }))
    if (views.length > 1) shared++
    const [first, ...rest] = views
    for (const { s, job } of rest) {
      const where = (index: number | undefined, reason: string) =>
        failures.push({
          bundle: s.bundle,
          origin: s.origin,
          ...(index !== undefined ? { index } : {}),
          reason,
        })
      if (first.job.specHash && job.specHash && first.job.specHash.value !== job.specHash.value) {
        where(
          job.specHash.index,
          `job ${id}: spec hash ${job.specHash.value} disagrees with ${first.job.specHash.value} in ${first.s.origin} entry ${first.job.specHash.index}`,
        )
      }
      for (const [voter, vote] of job.votes) {
        const other = first.job.votes.get(voter)
        if (other && other.decision !== vote.decision) {
          where(
            vote.index,
            `job ${id}: vote of ${voter} is ${vote.decision} here but ${other.decision} in ${first.s.origin}`,
          )
        }
      }
      const [x, y] = [first.job.destroyed, job.destroyed]
      if (x && y && x.digest !== y.digest)
        where(
          y.index,
          `job ${id}: the enclave's "destroyed" record differs from the one in ${first.s.origin}`,
        )
      const [a, b] = [first.job.result, job.result]
      for (const field of ['resultHash', 'modelHash'] as const) {
        if (a?.[field] !== undefined && b?.[field] !== undefined && a[field] !== b[field]) {
          where(b.index, `job ${id}: ${field} ${b[field]} disagrees with ${a[field]} in ${first.s.origin}`)
        }
      }
    }
    // A party whose log is present but silent about the job is worth a look, not proof of anything.
    const parties = views.find((v) => v.job.parties)?.job.parties ?? []
    for (const s of states) {
      if (parties.includes(parseOrigin(s.origin).peerId) && !s.jobs.has(id)) {
        warnings.push(`${s.origin}: party to job ${id} but its log does not mention it`)
      }
    }
  }
  return { total: ids.size, sharedAcrossLogs: shared }
}
