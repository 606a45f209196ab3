import { randomBytes } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Hono } from 'hono'
import type { Logger } from 'pino'
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'
import type { EnclaveCluster } from '../../../enclave/cluster.ts'
import { type Dataset, featureMatrix, selectColumns, subset } from '../../../learning/data/dataset.ts'
import type { AlgorithmRegistry } from '../../../learning/joint/registry.ts'
import type { JointContext, ModelPart } from '../../../learning/joint/types.ts'
import { handleProtocol, requestProtocol } from '../../../protocol/define.ts'
import { MAX_SCORE_IDS, scoringProtocol } from '../../../protocol/scoring.ts'
import type { SessionService } from '../../../protocol/session.ts'
import type { Host } from '../../host.ts'
import type { RouteDoc } from '../../http/app.ts'
import { parseBody } from '../../http/app.ts'
import { enclaveHostOf, type HostRecord, type OwnerRecord } from '../../jobs/enclave.ts'
import type { JobService, JobView } from '../../jobs/service.ts'
import { labelHolderOf } from '../../jobs/training.ts'
import type { Membership } from '../../membership.ts'
import type { NodeStore } from '../../store.ts'
import type { DatasetRecord, DatasetRegistry } from '../datasets/registry.ts'
import { teeScoreHost, teeScoreOwner } from './enclave.ts'

export interface FederatedScoringDeps {
  /** The enclaves this node hosts, for models trained in enclave mode. */
  cluster?: EnclaveCluster
  host: Host
  membership: Membership
  sessions: SessionService
  jobs: JobService
  datasets: DatasetRegistry
  algorithms: AlgorithmRegistry
  store: NodeStore
  log: Logger
}

/** What a party needs to take part in scoring with one job's model. */
type Loaded =
  | { kind: 'split'; job: JobView; self: string; part: ModelPart }
  | { kind: 'tee-owner'; job: JobView; self: string; rec: OwnerRecord }
  | { kind: 'tee-host'; job: JobView; self: string; rec: HostRecord }

/**
 * Real-time scoring with a split model: the label holder names customers of a succeeded vertical training job;
 * every party loads its own columns of those customers (from its registered dataset, cached in memory) and
 * runs its part of the algorithm's joint prediction over a fresh session. Feature holders answer only the
 * job's label holder, only for jobs they took part in; only the label holder gets scores.
 */
export class FederatedScoring {
  private readonly d: FederatedScoringDeps
  private readonly indexes = new WeakMap<Dataset, Map<string, number>>()

  constructor(deps: FederatedScoringDeps) {
    this.d = deps
  }

  async start(): Promise<void> {
    await handleProtocol(
      this.d.host,
      scoringProtocol,
      async (req, ctx) => {
        const loaded = await this.load(req.jobId)
        const holder = loaded.job.spec.parties.find((p) => p.name === labelHolderOf(loaded.job.spec))!
        if (ctx.remotePeer.toString() !== holder.peerId) {
          throw new SyndicateError('ERR_FORBIDDEN', 'only the label holder of the job asks for scores')
        }
        await this.runParty(loaded, req.session, req.ids)
        return { ok: true as const }
      },
      { admit: (p: PeerId) => this.d.membership.isMember(p), log: this.d.log },
    )
  }

  /** At the label holder: scores `ids` with the split model of job `jobId`. */
  async score(jobId: string, ids: string[]): Promise<{ scores: number[]; ms: number }> {
    const t0 = performance.now()
    if (ids.length === 0 || ids.length > MAX_SCORE_IDS) {
      throw new SyndicateError('ERR_INVALID_REQUEST', `score 1 to ${MAX_SCORE_IDS} customers at a time`)
    }
    const loaded = await this.load(jobId)
    const { job, self } = loaded
    if (labelHolderOf(job.spec) !== self) {
      throw new SyndicateError('ERR_FORBIDDEN', 'federated scoring is asked at the label holder of the job')
    }
    const session = `score:${jobId}:${randomBytes(8).toString('hex')}`
    const asks = job.spec.parties
      .filter((p) => p.name !== self)
      .map((p) =>
        requestProtocol(this.d.host, peerIdFromString(p.peerId), scoringProtocol, { jobId, session, ids }),
      )
    const [scores] = await Promise.all([this.runParty(loaded, session, ids), ...asks])
    if (!scores) throw new SyndicateError('ERR_INTERNAL', 'the label holder received no scores')
    return { scores: Array.from(scores), ms: performance.now() - t0 }
  }

  private async runParty(loaded: Loaded, session: string, ids: string[]): Promise<Float64Array | undefined> {
    const { job, self } = loaded
    const parties = Object.fromEntries(job.spec.parties.map((p) => [p.name, p.peerId]))
    if (loaded.kind === 'tee-host') {
      const channel = this.d.sessions.open(session, self, parties)
      try {
        return void (await teeScoreHost(
          channel,
          job.spec,
          session,
          this.d.cluster,
          loaded.rec,
          labelHolderOf(job.spec)!,
        ))
      } finally {
        channel.close()
      }
    }
    const me = job.spec.parties.find((p) => p.name === self)!
    const rec = await this.d.datasets.get(me.dataset!)
    if (!rec)
      throw new SyndicateError(
        'ERR_DATASET_UNKNOWN',
        `dataset ${me.dataset} is no longer registered on ${self}`,
      )
    const { data, index } = this.dataset(rec)
    const rows = ids.map((id) => {
      const i = index.get(id)
      if (i === undefined)
        throw new SyndicateError('ERR_UNKNOWN_CUSTOMER', `${self} has no customer ${id} in ${rec.name}`)
      return i
    })
    const sel = subset(data, rows)
    if (loaded.kind === 'tee-owner') {
      const channel = this.d.sessions.open(session, self, parties)
      try {
        const cols = selectColumns(sel, me.columns ?? sel.featureNames)
        return await teeScoreOwner(
          channel,
          job.spec,
          self,
          session,
          cols,
          loaded.rec,
          labelHolderOf(job.spec)!,
        )
      } finally {
        channel.close()
      }
    }
    const { part } = loaded
    const algo = this.d.algorithms.vertical.get(job.spec.algorithm)
    if (!algo) throw new SyndicateError('ERR_NOT_FOUND', `this node no longer offers ${job.spec.algorithm}`)
    const channel = this.d.sessions.open(session, self, parties)
    const ctx: JointContext = {
      channel,
      self,
      labelHolder: labelHolderOf(job.spec)!,
      tagPrefix: 'score/',
      params: {},
      seed: 0,
      signal: new AbortController().signal,
      progress: () => undefined,
    }
    try {
      const X = featureMatrix(sel, part.features)
      return (
        (await algo.predict(ctx, part, { X, rows: sel.ids.length, features: part.features })) ?? undefined
      )
    } finally {
      channel.close()
    }
  }

  private async load(jobId: string): Promise<Loaded> {
    const job = await this.d.jobs.get(jobId)
    if (job?.spec.kind !== 'train' || job.spec.mode === 'hfl') {
      throw new SyndicateError('ERR_NOT_FOUND', `no vertical training job ${jobId} on this node`)
    }
    if (job.state !== 'succeeded')
      throw new SyndicateError('ERR_CONFLICT', `job ${jobId} did not succeed (${job.state})`)
    const self = job.spec.parties.find((p) => p.peerId === this.d.host.peerId.toString())!.name
    if (job.spec.mode === 'tee') {
      const isHost = enclaveHostOf(job.spec)?.name === self
      const rec = isHost
        ? await this.d.store.sub<HostRecord>('enclave-models').get(jobId)
        : await this.d.store.sub<OwnerRecord>('enclave-jobs').get(jobId)
      if (!rec) throw new SyndicateError('ERR_NOT_FOUND', `no enclave record of job ${jobId} on this node`)
      return isHost
        ? { kind: 'tee-host', job, self, rec: rec as HostRecord }
        : { kind: 'tee-owner', job, self, rec: rec as OwnerRecord }
    }
    const stored = await this.d.store.sub<{ part: ModelPart }>('model-parts').get(jobId)
    if (!stored) throw new SyndicateError('ERR_NOT_FOUND', `no model part of job ${jobId} on this node`)
    return { kind: 'split', job, self, part: stored.part }
  }

  /** The dataset's rows (loaded once by the registry) indexed by id: a scoring request must not parse a file. */
  private dataset(rec: DatasetRecord): { data: Dataset; index: Map<string, number> } {
    const data = this.d.datasets.load(rec, false)
    let index = this.indexes.get(data)
    if (!index) {
      index = new Map(data.ids.map((id, i) => [id, i]))
      this.indexes.set(data, index)
    }
    return { data, index }
  }

  routes(): { app: Hono; docs: Omit<RouteDoc, 'access'>[] } {
    const app = new Hono()
    const Body = z.strictObject({ ids: z.array(z.string().min(1).max(128)).min(1).max(MAX_SCORE_IDS) })
    app.post('/:jobId/score', async (c) => {
      const { ids } = await parseBody(c, Body)
      const r = await this.score(c.req.param('jobId'), ids)
      return c.json({ scores: ids.map((id, i) => ({ id, probability: r.scores[i] })), ms: r.ms })
    })
    return {
      app,
      docs: [
        {
          method: 'post',
          path: '/:jobId/score',
          summary:
            'Score customers with the split model of a vertical training job, jointly with its parties',
          body: Body,
        },
      ],
    }
  }
}
