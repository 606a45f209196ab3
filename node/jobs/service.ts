import { randomBytes } from 'node:crypto'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ERR_CHANNEL_CLOSED } from '../../crypto/channel.ts'
import { SyndicateError } from '../../crypto/errors.ts'
import { handleProtocol, requestProtocol } from '../../protocol/define.ts'
import { ProtocolErrorCode } from '../../protocol/errors.ts'
import {
  type Cancel,
  type Commit,
  Domains,
  specHash as hashSpec,
  isTerminal,
  type JobDraft,
  JobDraftSchema,
  type JobMessage,
  type JobSpec,
  JobSpecSchema,
  type JobState,
  jobsProtocol,
  type Outcome,
  type Proposal,
  unsigned,
  type Vote,
} from '../../protocol/jobs.ts'
import type { SessionService } from '../../protocol/session.ts'
import { signObject, signValue, verifyValue } from '../../protocol/signing.ts'
import type { Membership } from '../membership.ts'
import type { NodeStore, Sublevel } from '../store.ts'
import type { ExecutionResult, ExecutorRegistry, Progress } from './executors.ts'
import { evaluatePolicy, type Policy } from './policy.ts'

/**
 * The job service: negotiates jobs with the other parties, runs committed jobs through the executor registry,
 * and records every step. Rules it enforces:
 * - the proposer signs the spec; each party checks it against its policy and signs accept or reject;
 * - the commit carries every party's accepting vote and the proposer's signature; nobody runs before holding
 *   a valid commit for exactly this job and spec;
 * - any party can cancel; the deadline expires the job wherever it is; a party restarted mid-run fails the job
 *   with a recorded reason and tells the others, so nothing hangs;
 * - every message is retried until delivered or the deadline passes, and handling is idempotent.
 */
export interface JobRecord {
  spec: JobSpec
  specHash: string
  proposal: Proposal
  state: JobState
  reason?: string
  votes: Record<string, Vote>
  commit?: Commit
  outcomes: Record<string, Outcome>
  result?: ExecutionResult
  history: Array<{ state: JobState; at: string; reason?: string }>
  updatedAt: string
}

export type JobView = JobRecord & { progress?: Progress; self: string }

/** What the governance log offers the job service: one signed entry per event. */
export interface JobRecorder {
  append(type: string, body: Record<string, unknown>, options: { jobId?: string }): Promise<unknown>
}

export interface JobServiceDeps {
  host: Libp2p
  membership: Membership
  sessions: SessionService
  store: NodeStore
  privateKey: PrivateKey
  executors: ExecutorRegistry
  policy: () => Policy
  recorder: () => JobRecorder | undefined
  log: Logger
}

const SUBLEVEL = 'jobs'
/** What a job gathers once and never changes (spec, votes, outcomes), kept apart from its record (see `parts`). */
const PARTS_SUBLEVEL = 'job-parts'
/** Job messages are signed in batches: jobs negotiated at once share signatures (protocol/signing.ts). */
const BATCH = { batch: true }
const DEFAULT_TIMEOUT_S = 3600
const CACHE_SIZE = 4096

export class JobService {
  private readonly d: JobServiceDeps
  private readonly self: string
  private readonly locks = new Map<string, Promise<unknown>>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly running = new Map<string, AbortController>()
  private readonly runs = new Set<Promise<void>>()
  private readonly progress = new Map<string, Progress>()
  private readonly listeners = new Set<(job: JobRecord) => void>()
  /** Records of recent jobs, so a burst of messages does not read and parse the same record again and again. */
  private readonly cache = new Map<string, JobRecord>()
  /** Parsed peer ids of the parties messages go to (decoding one costs more than sending a small message). */
  private readonly peerIds = new Map<string, PeerId>()
  /** Saves gathered in the current turn of the event loop, written together as one batch. */
  private pendingSaves: { jobs: Map<string, JobRecord>; written: Promise<void> } | undefined
  private lastWrite: Promise<void> = Promise.resolve()
  /** Jobs with a save not yet written: never evicted, so nobody reads an older state from disk. */
  private readonly unwritten = new Map<string, number>()
  /**
   * Per job, what is stored: each part's key → the object written, and the record's JSON, so that a save
   * writes only new parts, and the record only if it changed (an outcome arriving after the end adds a part).
   */
  private readonly written = new WeakMap<JobRecord, { parts: Map<string, unknown>; head?: string }>()
  private stopped = false

  constructor(deps: JobServiceDeps) {
    this.d = deps
    this.self = deps.host.peerId.toString()
  }

  async start(): Promise<void> {
    const admit = (p: PeerId) => this.d.membership.isMember(p)
    await handleProtocol(
      this.d.host,
      jobsProtocol,
      (msg, ctx) => this.onMessage(msg, ctx.remotePeer.toString()),
      { admit, log: this.d.log },
    )
    for await (const [id, head] of this.jobs().iterator()) {
      if (!isTerminal((head as StoredJob).state))
        await this.withJob(id, async () => {
          const job = await this.load(id)
          if (job) await this.resume(job)
        })
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    // A run under way is abandoned, not finished: its persisted state stays `running`, exactly as after a
    // crash, and the restart records the failure. The other parties see the session drop.
    for (const c of this.running.values())
      c.abort(new SyndicateError('ERR_NODE_STOPPING', 'the node is shutting down'))
    await Promise.allSettled([...this.runs])
    await Promise.allSettled([...this.locks.values()])
    await this.lastWrite
  }

  /** Called with every job whose state changed (tests, progress displays). */
  onChange(fn: (job: JobRecord) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  // ---- operator actions ------------------------------------------------------------------------------------

  async propose(draftInput: JobDraft): Promise<JobView> {
    const parsed = JobDraftSchema.safeParse(draftInput)
    if (!parsed.success) throw invalid('job draft', parsed.error.issues)
    const draft = parsed.data
    const now = new Date()
    const parties = draft.parties.map((p) => {
      const m = this.d.membership.document?.body.members.find((x) => x.name === p.name)
      if (!m)
        throw new SyndicateError('ERR_INVALID_REQUEST', `party ${p.name} is not a member of the consortium`)
      if (p.peerId && p.peerId !== m.peerId)
        throw new SyndicateError(
          'ERR_INVALID_REQUEST',
          `party ${p.name} has peer id ${m.peerId}, not ${p.peerId}`,
        )
      return { ...p, peerId: m.peerId }
    })
    if (!parties.some((p) => p.peerId === this.self))
      throw new SyndicateError(
        'ERR_INVALID_REQUEST',
        'this node must be one of the parties it proposes a job for',
      )
    const me = parties.find((p) => p.peerId === this.self)!
    if (!me.roles.includes('proposer')) me.roles = ['proposer', ...me.roles]
    const specResult = JobSpecSchema.safeParse({
      v: 1,
      id:
        draft.id ??
        `${draft.kind}-${now
          .toISOString()
          .replace(/[-:.TZ]/g, '')
          .slice(0, 14)}-${randomBytes(3).toString('hex')}`,
      kind: draft.kind,
      proposer: this.self,
      parties,
      mode: draft.mode,
      algorithm: draft.algorithm,
      params: draft.params,
      outputs: draft.outputs,
      deadline:
        draft.deadline ??
        new Date(now.getTime() + (draft.timeoutSeconds ?? DEFAULT_TIMEOUT_S) * 1000).toISOString(),
      createdAt: now.toISOString(),
    })
    if (!specResult.success) throw invalid('job spec', specResult.error.issues)
    const spec = specResult.data
    const problem = this.d.executors.problem(spec)
    if (problem) throw new SyndicateError('ERR_INVALID_REQUEST', problem)
    if (Date.parse(spec.deadline) <= Date.now())
      throw new SyndicateError('ERR_INVALID_REQUEST', 'the deadline has already passed')
    if (await this.load(spec.id)) throw new SyndicateError('ERR_CONFLICT', `a job ${spec.id} already exists`)
    const proposal: Proposal = {
      spec,
      signature: await signValue(Domains.proposal, spec, this.d.privateKey, BATCH),
    }
    return this.withJob(spec.id, async () => {
      const job = await this.admitProposal(proposal)
      for (const p of spec.parties)
        if (p.peerId !== this.self) this.deliver(job, p.peerId, { type: 'propose', proposal })
      return this.view(job)
    })
  }

  async approve(id: string): Promise<JobView> {
    return this.withJob(id, async () => {
      const job = await this.mustGet(id)
      if (job.state !== 'awaiting_approval' || job.votes[this.self])
        throw new SyndicateError(
          'ERR_CONFLICT',
          `job ${id} is not waiting for this node's approval (state ${job.state})`,
        )
      await this.castVote(job, 'accept')
      return this.view(job)
    })
  }

  async reject(id: string, reason: string): Promise<JobView> {
    return this.withJob(id, async () => {
      const job = await this.mustGet(id)
      if (job.state !== 'awaiting_approval' || job.votes[this.self])
        throw new SyndicateError(
          'ERR_CONFLICT',
          `job ${id} is not waiting for this node's approval (state ${job.state})`,
        )
      await this.castVote(job, 'reject', reason || 'rejected by the operator')
      return this.view(job)
    })
  }

  async cancel(id: string, reason: string): Promise<JobView> {
    return this.withJob(id, async () => {
      const job = await this.mustGet(id)
      if (isTerminal(job.state))
        throw new SyndicateError('ERR_CONFLICT', `job ${id} has already ended (${job.state})`)
      const body = {
        by: this.self,
        jobId: id,
        reason: reason || 'cancelled by the operator',
        specHash: job.specHash,
      }
      const cancel: Cancel = await signObject(Domains.cancel, body, this.d.privateKey, BATCH)
      await this.applyCancel(job, cancel)
      for (const p of job.spec.parties)
        if (p.peerId !== this.self) this.deliver(job, p.peerId, { type: 'cancel', cancel })
      return this.view(job)
    })
  }

  async get(id: string): Promise<JobView | undefined> {
    const job = await this.load(id)
    return job && this.view(job)
  }

  async list(filter: { state?: JobState } = {}): Promise<JobView[]> {
    const out: JobView[] = []
    for await (const [id, head] of this.jobs().iterator()) {
      // The live record where there is one: it may be ahead of the disk by a write under way.
      const live = this.cache.get(id)
      if (filter.state && (live ?? (head as StoredJob)).state !== filter.state) continue
      const job = live ?? (await this.revive(id, head as StoredJob))
      if (job) out.push(this.view(job))
    }
    return out.sort((a, b) => a.spec.createdAt.localeCompare(b.spec.createdAt))
  }

  /** Jobs waiting for this node's operator to approve or reject. */
  async pending(): Promise<JobView[]> {
    return (await this.list({ state: 'awaiting_approval' })).filter((j) => !j.votes[this.self])
  }

  // ---- messages from peers ---------------------------------------------------------------------------------

  private async onMessage(msg: JobMessage, from: string): Promise<{ ok: true; state?: JobState }> {
    const jobId = jobIdOf(msg)
    return this.withJob(jobId, async () => {
      let job: JobRecord
      switch (msg.type) {
        case 'propose':
          if (from !== msg.proposal.spec.proposer)
            throw violation(`a proposal must come from its proposer, not ${from}`)
          job = await this.onProposal(msg.proposal)
          break
        case 'vote':
          job = await this.mustGet(jobId)
          if (from !== msg.vote.voter) throw violation(`a vote must come from its voter, not ${from}`)
          await this.onVote(job, msg.vote)
          break
        case 'commit':
          job = await this.mustGet(jobId)
          if (from !== job.spec.proposer) throw violation('only the proposer commits a job')
          await this.onCommit(job, msg.commit)
          break
        case 'cancel':
          job = await this.mustGet(jobId)
          if (from !== msg.cancel.by)
            throw violation('a cancellation must come from the party that signed it')
          await this.onCancel(job, msg.cancel)
          break
        case 'outcome':
          job = await this.mustGet(jobId)
          if (from !== msg.outcome.party)
            throw violation('an outcome must come from the party that signed it')
          await this.onOutcome(job, msg.outcome)
          break
      }
      return { ok: true as const, state: job.state }
    })
  }

  private async onProposal(proposal: Proposal): Promise<JobRecord> {
    const { spec } = proposal
    const existing = await this.load(spec.id)
    if (existing) {
      if (existing.specHash !== hashSpec(spec))
        throw new SyndicateError('ERR_CONFLICT', `a different job ${spec.id} already exists here`)
      return existing
    }
    if (!(await verifyValue(Domains.proposal, spec, spec.proposer, proposal.signature)))
      throw violation('the proposal signature is invalid')
    if (!spec.parties.some((p) => p.peerId === this.self))
      throw violation('this node is not a party to the job')
    for (const p of spec.parties) {
      const m = this.d.membership.member(p.peerId)
      if (!m || m.name !== p.name)
        throw violation(`party ${p.name} (${p.peerId}) is not a member under that name`)
    }
    if (Date.parse(spec.deadline) <= Date.now()) throw violation('the job deadline has already passed')
    return this.admitProposal(proposal)
  }

  /** Stores a verified proposal, records it, and votes by policy (or waits for the operator). */
  private async admitProposal(proposal: Proposal): Promise<JobRecord> {
    const { spec } = proposal
    const job: JobRecord = {
      spec,
      specHash: hashSpec(spec),
      proposal,
      state: 'proposed',
      votes: {},
      outcomes: {},
      history: [],
      updatedAt: new Date().toISOString(),
    }
    this.transition(job, 'proposed')
    this.transition(job, 'awaiting_approval')
    const proposerName = this.d.membership.member(spec.proposer)?.name ?? spec.proposer
    const problem = this.d.executors.problem(spec)
    const decision = problem
      ? { decision: 'reject' as const, reasons: [problem] }
      : evaluatePolicy(this.d.policy(), spec, this.self, proposerName)
    // Proposing is the proposer's operator's approval, unless its own policy forbids the job.
    const isProposer = spec.proposer === this.self
    let vote: Vote | undefined
    if (decision.decision === 'reject') vote = await this.signVote(job, 'reject', decision.reasons.join('; '))
    else if (decision.decision === 'accept' || isProposer) vote = await this.signVote(job, 'accept')
    else
      this.d.log.info(
        { job: spec.id, kind: spec.kind, proposer: proposerName },
        'job waits for manual approval',
      )
    // An automatic vote is stored and recorded together with the proposal: one write, one log group.
    if (vote) job.votes[this.self] = vote
    await this.save(job)
    this.armDeadline(job)
    await Promise.all([
      this.record(job, 'job.propose', {
        kind: spec.kind,
        parties: spec.parties.map((p) => p.peerId),
        proposer: spec.proposer,
        specHash: job.specHash,
      }),
      ...(vote ? [this.record(job, 'job.vote', voteEntry(vote))] : []),
    ])
    if (!vote) return job
    if (!isProposer) this.deliver(job, spec.proposer, { type: 'vote', vote })
    else if (vote.decision === 'reject') await this.finish(job, 'rejected', rejection(proposerName, vote))
    // A job whose only party is its proposer commits at once.
    else if (allAccepted(job)) await this.commitVotes(job, [])
    return job
  }

  private async signVote(job: JobRecord, decision: 'accept' | 'reject', reason?: string): Promise<Vote> {
    const body = {
      decision,
      jobId: job.spec.id,
      ...(reason ? { reason } : {}),
      specHash: job.specHash,
      voter: this.self,
    }
    return signObject(Domains.vote, body, this.d.privateKey, BATCH)
  }

  /** An operator's decision: the proposer counts its own vote; any other party stores, records and sends it. */
  private async castVote(job: JobRecord, decision: 'accept' | 'reject', reason?: string): Promise<void> {
    const vote = await this.signVote(job, decision, reason)
    if (job.spec.proposer === this.self) {
      await this.acceptVote(job, vote)
    } else {
      job.votes[this.self] = vote
      await this.save(job)
      await this.record(job, 'job.vote', voteEntry(vote))
      this.deliver(job, job.spec.proposer, { type: 'vote', vote })
    }
  }

  /** At the proposer: a vote from another party, checked before it counts. */
  private async onVote(job: JobRecord, vote: Vote): Promise<void> {
    if (job.spec.proposer !== this.self) throw violation('votes go to the proposer')
    if (!job.spec.parties.some((p) => p.peerId === vote.voter))
      throw violation(`voter ${vote.voter} is not a party to job ${job.spec.id}`)
    if (vote.specHash !== job.specHash) throw violation('the vote is for a different spec')
    if (!(await verifyValue(Domains.vote, unsigned(vote), vote.voter, vote.signature)))
      throw violation('the vote signature is invalid')
    await this.acceptVote(job, vote)
  }

  /** At the proposer: collect votes; any reject ends the job; all accepts commit it. */
  private async acceptVote(job: JobRecord, vote: Vote): Promise<void> {
    if (job.state !== 'awaiting_approval' || job.votes[vote.voter]) return
    job.votes[vote.voter] = vote
    if (vote.decision === 'reject') {
      await this.save(job)
      await this.record(job, 'job.vote', voteEntry(vote))
      const name = this.d.membership.member(vote.voter)?.name ?? vote.voter
      await this.finish(job, 'rejected', rejection(name, vote))
      return
    }
    if (!allAccepted(job)) {
      await this.save(job)
      await this.record(job, 'job.vote', voteEntry(vote))
      return
    }
    await this.commitVotes(job, [['job.vote', voteEntry(vote)]])
  }

  /**
   * At the proposer, every party having accepted: signs the commit; the last vote (in `alsoRecord`), the
   * commit and the start are stored in one write and recorded in one group, and the commit goes out once
   * stored, before this party's own run starts, as the others wait on it.
   */
  private async commitVotes(job: JobRecord, alsoRecord: Array<[string, Record<string, unknown>]>) {
    const body = {
      jobId: job.spec.id,
      specHash: job.specHash,
      votes: job.spec.parties.map((p) => job.votes[p.peerId]),
    }
    const commit: Commit = await signObject(Domains.commit, body, this.d.privateKey, BATCH)
    await this.commitAndStart(job, commit, alsoRecord, () => {
      for (const p of job.spec.parties)
        if (p.peerId !== this.self) this.deliver(job, p.peerId, { type: 'commit', commit })
    })
  }

  private async onCommit(job: JobRecord, commit: Commit): Promise<void> {
    if (commit.jobId !== job.spec.id || commit.specHash !== job.specHash)
      throw violation('the commit is for another job or spec')
    const votes = job.spec.parties.map((p) => {
      const v = commit.votes.find((x) => x.voter === p.peerId)
      if (v?.decision !== 'accept' || v.jobId !== job.spec.id || v.specHash !== job.specHash)
        throw violation(`the commit lacks an accepting vote of ${p.name}`)
      return v
    })
    if (commit.votes.length !== job.spec.parties.length)
      throw violation('the commit carries votes of non-parties')
    // All signatures checked at once (on the thread pool). This party's own vote, byte for byte the one it
    // signed and kept, needs no check.
    const mine = job.votes[this.self]
    const checks = await Promise.all([
      verifyValue(Domains.commit, unsigned(commit), job.spec.proposer, commit.signature),
      ...votes.map((v) => sameVote(v, mine) || verifyValue(Domains.vote, unsigned(v), v.voter, v.signature)),
    ])
    if (!checks[0]) throw violation('the commit signature is invalid')
    const bad = votes.findIndex((_, i) => !checks[i + 1])
    if (bad >= 0) throw violation(`the vote of ${job.spec.parties[bad].name} in the commit is invalid`)
    if (job.state !== 'awaiting_approval') return
    await this.applyCommit(job, commit)
  }

  private async applyCommit(job: JobRecord, commit: Commit): Promise<void> {
    // Every party's vote, verified above, is kept with the job (the stored commit refers to them).
    for (const v of commit.votes) job.votes[v.voter] = v
    await this.commitAndStart(job, commit, [], () => undefined)
  }

  /**
   * With the job's lock held: takes the commit, and unless the node is stopping goes straight on to `running`,
   * so both states are one write and the commit, the start (and `alsoRecord`, recorded first) one log group;
   * `stored` runs once the write is done. Then starts the executor, outside the lock. A cancel or the deadline
   * waits for the lock and then finds the run's abort controller; a shutdown meanwhile stops it from starting.
   */
  private async commitAndStart(
    job: JobRecord,
    commit: Commit,
    alsoRecord: Array<[string, Record<string, unknown>]>,
    stored: () => void,
  ): Promise<void> {
    const id = job.spec.id
    const ctl = new AbortController()
    if (!this.stopped) this.running.set(id, ctl)
    job.commit = commit
    this.transition(job, 'committed')
    if (!this.stopped) this.transition(job, 'running')
    await this.save(job)
    stored()
    await Promise.all([
      ...alsoRecord.map(([type, body]) => this.record(job, type, body)),
      this.record(job, 'job.commit', { specHash: job.specHash }),
      ...(job.state === 'running' ? [this.record(job, 'job.start', { specHash: job.specHash })] : []),
    ])
    if (job.state !== 'running') return
    if (this.stopped) {
      // Shut down meanwhile: the job stays `running` on disk, exactly as after a crash; the restart fails it.
      this.running.delete(id)
      return
    }
    const run = this.execute(job, ctl)
    this.runs.add(run)
    void run.finally(() => this.runs.delete(run))
  }

  private async onCancel(job: JobRecord, cancel: Cancel): Promise<void> {
    if (cancel.specHash !== job.specHash) throw violation('the cancellation is for a different spec')
    if (!job.spec.parties.some((p) => p.peerId === cancel.by))
      throw violation('only a party can cancel a job')
    if (!(await verifyValue(Domains.cancel, unsigned(cancel), cancel.by, cancel.signature)))
      throw violation('the cancellation signature is invalid')
    await this.applyCancel(job, cancel)
  }

  private async applyCancel(job: JobRecord, cancel: Cancel): Promise<void> {
    if (isTerminal(job.state)) return
    const name = this.d.membership.member(cancel.by)?.name ?? cancel.by
    await this.record(job, 'job.cancel', { by: cancel.by, reason: cancel.reason, specHash: job.specHash })
    this.running
      .get(job.spec.id)
      ?.abort(new SyndicateError('ERR_JOB_CANCELLED', `cancelled by ${name}: ${cancel.reason}`))
    await this.finish(job, 'cancelled', `cancelled by ${name}: ${cancel.reason}`, { silent: true })
  }

  private async onOutcome(job: JobRecord, outcome: Outcome): Promise<void> {
    if (outcome.specHash !== job.specHash) throw violation('the outcome is for a different spec')
    if (!job.spec.parties.some((p) => p.peerId === outcome.party))
      throw violation('only a party reports an outcome')
    if (!(await verifyValue(Domains.outcome, unsigned(outcome), outcome.party, outcome.signature)))
      throw violation('the outcome signature is invalid')
    job.outcomes[outcome.party] = outcome
    await this.save(job)
    if (isTerminal(job.state)) return
    const name = this.d.membership.member(outcome.party)?.name ?? outcome.party
    if (outcome.state === 'rejected' && outcome.party === job.spec.proposer) {
      await this.finish(job, 'rejected', outcome.reason ?? `rejected (reported by ${name})`, { silent: true })
    } else if (outcome.state !== 'succeeded') {
      const reason = `${name} ${outcome.state}: ${outcome.reason ?? 'no reason given'}`
      const ctl = this.running.get(job.spec.id)
      if (ctl) ctl.abort(new SyndicateError('ERR_PARTY_FAILED', reason))
      else await this.finish(job, outcome.state === 'expired' ? 'expired' : 'failed', reason)
    }
  }

  // ---- running ---------------------------------------------------------------------------------------------

  private async execute(job: JobRecord, ctl: AbortController): Promise<void> {
    const id = job.spec.id
    const parties = Object.fromEntries(job.spec.parties.map((p) => [p.name, p.peerId]))
    const self = job.spec.parties.find((p) => p.peerId === this.self)!.name
    let channel: ReturnType<SessionService['open']> | undefined
    let result: ExecutionResult | undefined
    let error: Error | undefined
    try {
      channel = this.d.sessions.open(`job:${id}`, self, parties)
      const ch = channel
      ctl.signal.addEventListener('abort', () => ch.close(ctl.signal.reason as Error), { once: true })
      const t0 = performance.now()
      const r = await this.d.executors.get(job.spec.kind)({
        spec: job.spec,
        self,
        channel,
        signal: ctl.signal,
        progress: (p) => this.progress.set(id, p),
        log: this.d.log.child({ job: id }),
      })
      // What this party sent and received, and how long it ran: for reports, never part of the result hash.
      const traffic = channel.stats()
      result = {
        ...r,
        summary: {
          ...r.summary,
          seconds: (performance.now() - t0) / 1000,
          bytesSent: traffic.bytesSent,
          bytesReceived: traffic.bytesReceived,
          messagesSent: traffic.messagesSent,
        },
      }
    } catch (e) {
      error = ctl.signal.aborted ? (ctl.signal.reason as Error) : await this.explained(job, e as Error)
    } finally {
      this.running.delete(id)
      if (error) channel?.close(error)
      else channel?.close()
    }
    if (this.stopped) return
    await this.withJob(id, async () => {
      const j = await this.mustGet(id)
      if (isTerminal(j.state)) return
      if (result) {
        j.result = result
        await this.record(j, 'job.result', {
          metrics: result.metrics,
          ...(result.modelHash ? { modelHash: result.modelHash } : {}),
          specHash: j.specHash,
        })
        await this.finish(j, 'succeeded', undefined)
      } else {
        const expired = (error as { code?: string } | undefined)?.code === 'ERR_JOB_EXPIRED'
        await this.finish(j, expired ? 'expired' : 'failed', error?.message ?? 'unknown error')
      }
    })
  }

  /** Ends a job here: persists, records a failure where there is one, and tells the other parties. */
  private async finish(
    job: JobRecord,
    state: JobState,
    reason: string | undefined,
    opts: { silent?: boolean } = {},
  ): Promise<void> {
    if (isTerminal(job.state)) return
    this.transition(job, state, reason)
    clearTimeout(this.timers.get(job.spec.id))
    this.timers.delete(job.spec.id)
    this.progress.delete(job.spec.id)
    // The outcome is signed first, so the end state and what this party tells the others are one write.
    let outcome: Outcome | undefined
    if (!opts.silent) {
      const body = {
        jobId: job.spec.id,
        party: this.self,
        ...(reason ? { reason: reason.slice(0, 1000) } : {}),
        ...(job.result ? { resultHash: job.result.resultHash } : {}),
        specHash: job.specHash,
        state: state as Outcome['state'],
      }
      outcome = await signObject(Domains.outcome, body, this.d.privateKey, BATCH)
      job.outcomes[this.self] = outcome
    }
    await this.save(job)
    if (state === 'failed' || state === 'expired' || state === 'rejected') {
      await this.record(job, 'job.fail', {
        party: this.self,
        reason: `${state}: ${reason ?? ''}`.slice(0, 1000),
        specHash: job.specHash,
      })
    }
    this.d.log.info({ job: job.spec.id, state, reason }, 'job ended')
    if (!outcome) return
    for (const p of job.spec.parties)
      if (p.peerId !== this.self) this.deliver(job, p.peerId, { type: 'outcome', outcome })
  }

  private armDeadline(job: JobRecord): void {
    clearTimeout(this.timers.get(job.spec.id))
    const ms = Math.max(0, Date.parse(job.spec.deadline) - Date.now())
    // setTimeout caps at ~24.8 days; longer deadlines re-arm.
    const timer = setTimeout(
      () => {
        if (Date.parse(job.spec.deadline) > Date.now()) return this.armDeadline(job)
        void this.withJob(job.spec.id, async () => {
          const j = await this.mustGet(job.spec.id)
          if (isTerminal(j.state)) return
          const reason = `deadline ${j.spec.deadline} passed in state ${j.state}`
          const ctl = this.running.get(j.spec.id)
          if (ctl) ctl.abort(new SyndicateError('ERR_JOB_EXPIRED', reason))
          else await this.finish(j, 'expired', reason)
        })
      },
      Math.min(ms, 2 ** 31 - 1),
    )
    timer.unref()
    this.timers.set(job.spec.id, timer)
  }

  /** After a restart: pick up negotiation where it was; a run that was under way cannot resume and fails. */
  private async resume(job: JobRecord): Promise<void> {
    if (Date.parse(job.spec.deadline) <= Date.now()) {
      await this.finish(job, 'expired', `deadline ${job.spec.deadline} passed while the node was down`)
      return
    }
    this.armDeadline(job)
    if (job.state === 'committed' || job.state === 'running') {
      await this.finish(
        job,
        'failed',
        'this party restarted during the run; the run cannot resume from its state',
      )
      return
    }
    if (job.state !== 'awaiting_approval') return
    if (job.spec.proposer === this.self) {
      for (const p of job.spec.parties) {
        if (p.peerId !== this.self && !job.votes[p.peerId])
          this.deliver(job, p.peerId, { type: 'propose', proposal: job.proposal })
      }
    } else if (job.votes[this.self]) {
      this.deliver(job, job.spec.proposer, { type: 'vote', vote: job.votes[this.self] })
    }
  }

  // ---- plumbing --------------------------------------------------------------------------------------------

  /** Sends `msg` to `peer`, retrying with backoff until it is taken, refused, or the job's deadline passes. */
  private deliver(job: JobRecord, peer: string, msg: JobMessage): void {
    const deadline = Date.parse(job.spec.deadline)
    let peerId = this.peerIds.get(peer)
    if (!peerId) {
      peerId = peerIdFromString(peer)
      this.peerIds.set(peer, peerId)
    }
    const to = peerId
    const attempt = async (delay: number): Promise<void> => {
      if (this.stopped || Date.now() > deadline) return
      try {
        await requestProtocol(this.d.host, to, jobsProtocol, msg)
      } catch (e) {
        const err = e as SyndicateError
        if (err.code === ProtocolErrorCode.REMOTE_ERROR) {
          this.d.log.warn(
            { job: job.spec.id, peer, type: msg.type, err: err.message },
            'peer refused a job message',
          )
          return
        }
        this.d.log.debug(
          { job: job.spec.id, peer, type: msg.type, err: err.message, retryInMs: delay },
          'job message not delivered; retrying',
        )
        await new Promise((r) => setTimeout(r, delay).unref())
        return attempt(Math.min(delay * 2, 5000))
      }
    }
    void attempt(200)
  }

  private transition(job: JobRecord, state: JobState, reason?: string): void {
    job.state = state
    if (reason !== undefined) job.reason = reason
    job.updatedAt = new Date().toISOString()
    job.history.push({ state, at: job.updatedAt, ...(reason !== undefined ? { reason } : {}) })
  }

  /**
   * Persists `job`; resolves once it is written. Saves made in the same turn of the event loop share one
   * LevelDB batch (a job saved twice is written once, in its latest state), and batches are written one
   * after the other, so a job's stored state never goes back. Listeners hear of a change once it is stored.
   */
  private save(job: JobRecord): Promise<void> {
    this.remember(job)
    let batch = this.pendingSaves
    if (!batch) {
      const jobs = new Map<string, JobRecord>()
      const previous = this.lastWrite
      const written = new Promise<void>((resolve) => setImmediate(resolve))
        .then(async () => {
          if (this.pendingSaves?.jobs === jobs) this.pendingSaves = undefined
          await previous
          try {
            await this.d.store.db.batch([...jobs.values()].flatMap((j) => this.writes(j)))
          } catch (e) {
            // Nothing of the batch is stored: the next save of these jobs writes every part again.
            for (const j of jobs.values()) this.written.delete(j)
            throw e
          }
          for (const j of jobs.values()) for (const fn of this.listeners) fn(j)
        })
        .finally(() => {
          for (const id of jobs.keys()) {
            const n = (this.unwritten.get(id) ?? 1) - 1
            if (n > 0) this.unwritten.set(id, n)
            else this.unwritten.delete(id)
          }
        })
      this.lastWrite = written.catch(() => undefined)
      batch = { jobs, written }
      this.pendingSaves = batch
    }
    if (!batch.jobs.has(job.spec.id))
      this.unwritten.set(job.spec.id, (this.unwritten.get(job.spec.id) ?? 0) + 1)
    batch.jobs.set(job.spec.id, job)
    return batch.written
  }

  /**
   * The batch operations that store `job`: its record, and those of its parts not stored yet. A job is saved
   * several times as it moves; its spec, votes and outcomes, most of its bytes, are written once each.
   */
  private writes(job: JobRecord) {
    let done = this.written.get(job)
    if (!done) {
      done = { parts: new Map() }
      this.written.set(job, done)
    }
    const ops: Array<{
      type: 'put'
      sublevel: Sublevel
      key: string
      value: unknown
      valueEncoding?: 'utf8'
    }> = []
    for (const [key, value] of parts(job)) {
      if (done.parts.get(key) === value) continue
      done.parts.set(key, value)
      ops.push({
        type: 'put',
        sublevel: this.parts(),
        key,
        value: value === job.spec ? { spec: job.spec, signature: job.proposal.signature } : value,
      })
    }
    const head = JSON.stringify(stored(job))
    if (head !== done.head) {
      done.head = head
      // Already JSON: stored as it is, read back by the sublevel's JSON encoding.
      ops.push({ type: 'put', sublevel: this.jobs(), key: job.spec.id, value: head, valueEncoding: 'utf8' })
    }
    return ops
  }

  /** The record `head` of job `id` with its parts read back; undefined if its spec is missing. */
  private async revive(id: string, head: StoredJob | LegacyJob): Promise<JobRecord | undefined> {
    if ('spec' in head) return reviveLegacy(head)
    const specPart = await this.parts().get(partKey(id, 'spec'))
    const { spec, signature } = (specPart ?? {}) as { spec?: JobSpec; signature?: string }
    if (!spec || !signature) {
      this.d.log.error({ job: id }, 'the stored job has no spec; it is ignored')
      return undefined
    }
    const peers = spec.parties.map((p) => p.peerId)
    const keys = [...peers.map((p) => partKey(id, 'vote', p)), ...peers.map((p) => partKey(id, 'outcome', p))]
    const values = await this.parts().getMany(keys)
    const votes: Record<string, Vote> = {}
    const outcomes: Record<string, Outcome> = {}
    peers.forEach((p, i) => {
      if (values[i]) votes[p] = values[i] as Vote
      if (values[i + peers.length]) outcomes[p] = values[i + peers.length] as Outcome
    })
    const { commit, ...rest } = head
    const job: JobRecord = { ...rest, spec, proposal: { spec, signature }, votes, outcomes }
    if (commit) job.commit = { ...commit, votes: commit.votes ?? peers.map((p) => votes[p]) }
    this.written.set(job, { parts: new Map(parts(job)), head: JSON.stringify(stored(job)) })
    return job
  }

  private async load(id: string): Promise<JobRecord | undefined> {
    const cached = this.cache.get(id)
    if (cached) return cached
    const head = await this.jobs().get(id)
    const job = head === undefined ? undefined : await this.revive(id, head as StoredJob)
    // Another caller may have loaded (and changed) it meanwhile: there is one record object per job.
    const again = this.cache.get(id)
    if (again) return again
    if (job) this.remember(job)
    return job
  }

  private remember(job: JobRecord): void {
    if (this.cache.get(job.spec.id) === job) return
    this.cache.set(job.spec.id, job)
    // Only ended jobs leave the cache, so an unfinished job always has exactly one live record object.
    if (this.cache.size <= CACHE_SIZE) return
    for (const [id, j] of this.cache) {
      if (this.cache.size <= CACHE_SIZE) break
      if (isTerminal(j.state) && !this.unwritten.has(id) && !this.locks.has(id)) this.cache.delete(id)
    }
  }

  private async record(job: JobRecord, type: string, body: Record<string, unknown>): Promise<void> {
    const recorder = this.d.recorder()
    if (!recorder) return
    try {
      await recorder.append(type, body, { jobId: job.spec.id })
    } catch (e) {
      this.d.log.error(
        { job: job.spec.id, type, err: (e as Error).message },
        'cannot write to the governance log',
      )
    }
  }

  /** Job records, by job id (StoredJob, or LegacyJob as written before parts were kept apart). */
  private jobs() {
    return this.d.store.sub(SUBLEVEL)
  }

  private parts() {
    return this.d.store.sub(PARTS_SUBLEVEL)
  }

  /**
   * A run that failed because other parties left it (a closed session, clients dropped from a protocol):
   * those parties have usually failed themselves, and their failure reports name the cause. Wait briefly for
   * one of them and record it, rather than blame the party that only passed the failure on.
   */
  private async explained(job: JobRecord, e: Error): Promise<Error> {
    const d = (e as SyndicateError).details
    const names = [
      ...(typeof d?.party === 'string' ? [d.party] : []),
      ...(Array.isArray(d?.dropped) ? (d.dropped as unknown[]) : []),
    ]
    // A party that is gone altogether (no connection) will not report: waiting for it only delays ours.
    const suspects = job.spec.parties.filter(
      (p) =>
        names.includes(p.name) &&
        p.peerId !== this.self &&
        this.d.host.getConnections(peerIdFromString(p.peerId)).length > 0,
    )
    const closed = (e as SyndicateError).code === ERR_CHANNEL_CLOSED
    if (!closed && !Array.isArray(d?.dropped)) return e
    // A party whose session a peer closed waits longer than one that saw peers drop out, so that two parties
    // waiting for each other (each saw the other go) resolve: the shorter wait reports first.
    const deadline = Date.now() + (closed ? OUTCOME_GRACE_MS : OUTCOME_GRACE_MS / 2)
    while (suspects.length > 0 && Date.now() < deadline && !this.stopped) {
      const outcomes = (await this.load(job.spec.id))?.outcomes ?? {}
      const report = suspects.map((p) => outcomes[p.peerId]).find((o) => o && o.state !== 'succeeded')
      if (report)
        return new SyndicateError(
          'ERR_PARTY_FAILED',
          `${this.nameOf(report.party)} ${report.state}: ${report.reason ?? 'no reason given'}`,
          { cause: e.message },
        )
      await new Promise((r) => setTimeout(r, 50))
    }
    return e
  }

  private nameOf(peerId: string): string {
    return this.d.membership.member(peerId)?.name ?? peerId
  }

  private async mustGet(id: string): Promise<JobRecord> {
    const job = await this.load(id)
    if (!job) throw new SyndicateError('ERR_NOT_FOUND', `no job ${id} on this node`)
    return job
  }

  private view(job: JobRecord): JobView {
    const progress = this.progress.get(job.spec.id)
    return { ...job, self: this.self, ...(progress ? { progress } : {}) }
  }

  /** Serialises everything that touches one job, so messages and operator actions never interleave. */
  private withJob<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const settled = next.catch(() => undefined)
    this.locks.set(id, settled)
    settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id)
    })
    return next
  }
}

/**
 * A job record as stored: its changing part. The spec (with the proposal's signature), each vote and each
 * outcome are stored once each apart from it (`parts`), and put back when it is read. The commit is kept
 * without its votes when they are the record's own, in the parties' order (as signed).
 */
type StoredJob = Omit<JobRecord, 'spec' | 'proposal' | 'votes' | 'outcomes' | 'commit'> & {
  commit?: Omit<Commit, 'votes'> & { votes?: Vote[] }
}

function stored(job: JobRecord): StoredJob {
  const { commit, proposal: _p, spec: _s, votes: _v, outcomes: _o, ...rest } = job
  const own = commit?.votes.every((v, i) => v === job.votes[job.spec.parties[i]?.peerId])
  return {
    ...rest,
    ...(commit
      ? {
          commit: own
            ? { jobId: commit.jobId, specHash: commit.specHash, signature: commit.signature }
            : commit,
        }
      : {}),
  }
}

/** Keys of a job's parts: its id first, so that they sort together (a job id has no space). */
function partKey(id: string, what: 'spec' | 'vote' | 'outcome', peer?: string): string {
  return peer === undefined ? `${id} ${what}` : `${id} ${what} ${peer}`
}

/** A job's parts as [key, object]; the spec stands for itself with the proposal's signature. */
function parts(job: JobRecord): Array<[string, unknown]> {
  const id = job.spec.id
  return [
    [partKey(id, 'spec'), job.spec],
    ...Object.entries(job.votes).map(([p, v]): [string, unknown] => [partKey(id, 'vote', p), v]),
    ...Object.entries(job.outcomes).map(([p, o]): [string, unknown] => [partKey(id, 'outcome', p), o]),
  ]
}

/** A record as nodes stored it before parts were kept apart: everything in one value. */
type LegacyJob = Omit<JobRecord, 'proposal' | 'commit'> & {
  proposal: { signature: string; spec?: JobSpec }
  commit?: Omit<Commit, 'votes'> & { votes?: Vote[] }
}

function reviveLegacy(raw: LegacyJob): JobRecord {
  const { commit, proposal, ...rest } = raw
  const job: JobRecord = { ...rest, proposal: { spec: rest.spec, signature: proposal.signature } }
  if (commit)
    job.commit = { ...commit, votes: commit.votes ?? rest.spec.parties.map((p) => rest.votes[p.peerId]) }
  return job
}

function jobIdOf(msg: JobMessage): string {
  switch (msg.type) {
    case 'propose':
      return msg.proposal.spec.id
    case 'vote':
      return msg.vote.jobId
    case 'commit':
      return msg.commit.jobId
    case 'cancel':
      return msg.cancel.jobId
    case 'outcome':
      return msg.outcome.jobId
  }
}

/** The log entry of a vote (members in canonical order, as every logged body here). */
function voteEntry(v: Vote) {
  return {
    decision: v.decision,
    ...(v.reason ? { reason: v.reason.slice(0, 1000) } : {}),
    specHash: v.specHash,
    voter: v.voter,
  }
}

function allAccepted(job: JobRecord): boolean {
  return job.spec.parties.every((p) => job.votes[p.peerId]?.decision === 'accept')
}

function rejection(name: string, vote: Vote): string {
  return `${name} rejected: ${vote.reason ?? 'no reason given'}`
}

/** Field for field the vote `mine` (signed here and kept), signature included. */
function sameVote(v: Vote, mine: Vote | undefined): boolean {
  return (
    mine !== undefined &&
    v.signature === mine.signature &&
    v.jobId === mine.jobId &&
    v.specHash === mine.specHash &&
    v.voter === mine.voter &&
    v.decision === mine.decision &&
    v.reason === mine.reason
  )
}

function violation(message: string): SyndicateError {
  return new SyndicateError('ERR_JOB_PROTOCOL', message)
}

function invalid(what: string, issues: Array<{ path: PropertyKey[]; message: string }>): SyndicateError {
  const problems = issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
  return new SyndicateError('ERR_INVALID_REQUEST', `invalid ${what}: ${problems.join('; ')}`, { problems })
}

/** How long a run that others left waits for their failure reports. */
const OUTCOME_GRACE_MS = 2000
