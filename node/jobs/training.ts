import { z } from 'zod'
import type { PartyChannel } from '../../crypto/channel.ts'
import { SyndicateError } from '../../crypto/errors.ts'
import { runPsi } from '../../crypto/psi/index.ts'
import { type Dataset, featureMatrix, subset } from '../../learning/data/dataset.ts'
import { stratifiedSplitIndices } from '../../learning/data/split.ts'
import type { AlgorithmRegistry } from '../../learning/joint/registry.ts'
import type { JointContext, LocalData, ModelPart } from '../../learning/joint/types.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { scoreMetrics } from '../../learning/metrics/summary.ts'
import { scoreDataset, trainModel } from '../../learning/models/train.ts'
import type { Model } from '../../learning/models/types.ts'
import { seedFromString } from '../../learning/random.ts'
import { decodeMessage, encodeMessage } from '../../protocol/define.ts'
import type { JobSpec, JobState } from '../../protocol/jobs.ts'
import type { DatasetRecord, DatasetRegistry } from '../services/datasets/registry.ts'
import type { ModelRegistry } from '../services/models/registry.ts'
import type { PrivacyBudgets } from '../services/privacy/budgets.ts'
import type { NodeStore } from '../store.ts'
import { type Executor, type ExecutorContext, hashJson, type SpecCheck } from './executors.ts'

/**
 * `psi` and `train` jobs: the node side of joint learning.
 *
 * Each party loads its registered dataset (the columns its party entry names), and for vertical modes
 * (`mpc`, `he`) the parties align rows with ECDH PSI inside the job, or load the alignment a completed `psi`
 * job left on each of them (params.alignment, as FATE's intersection output feeds training). The label holder
 * draws a seeded stratified 80/20 split of the aligned rows and sends the test mask (row positions only) to
 * the others; the algorithm trains on the training rows on every party at once; the label holder scores the
 * test rows jointly, computes the metrics, and sends them to every party, so all parties record the same
 * result.
 * Horizontal mode (`hfl`) trains on each party's own rows; the aggregator evaluates on the dataset named in
 * params.evaluation (its own held-out customers).
 */
const TrainParams = z
  .object({
    testFraction: z.number().gt(0).lt(1).default(0.2),
    seed: z.number().int().optional(),
    /**
     * Also train the label holder alone on its own features, in plaintext with the job's model family (LR for
     * the LR algorithms, GBDT for SecureBoost, MLP for the split NN), for comparison.
     */
    compareAlone: z.boolean().default(false),
    /** Vertical: the id of a succeeded `psi` job whose stored alignment every party reuses instead of PSI. */
    alignment: z.string().min(1).max(200).optional(),
    /** hfl: a dataset registered on the aggregator to evaluate on. */
    evaluation: z.string().optional(),
    /** Hyper-parameters passed to the algorithm. */
    algorithm: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()
export type TrainParams = z.infer<typeof TrainParams>

export interface TrainingDeps {
  datasets: DatasetRegistry
  algorithms: AlgorithmRegistry
  store: NodeStore
  privacy: PrivacyBudgets
  /** Where whole models (horizontal jobs) are registered for real-time scoring. */
  models: ModelRegistry
  self: string
  /** This node's record of a job (to check that a reused alignment comes from a `psi` job that succeeded). */
  job(id: string): Promise<{ spec: Pick<JobSpec, 'kind'>; state: JobState } | undefined>
}

export function labelHolderOf(spec: JobSpec): string | undefined {
  return spec.parties.find((p) => p.roles.includes('label-holder') || p.roles.includes('aggregator'))?.name
}

export function checkTrainSpec(
  deps: Pick<TrainingDeps, 'algorithms' | 'privacy' | 'self' | 'store'>,
): SpecCheck {
  const { algorithms } = deps
  return (spec) => {
    const params = TrainParams.safeParse(spec.params)
    if (!params.success)
      return `invalid training params: ${params.error.issues[0]?.path.join('.')} ${params.error.issues[0]?.message}`
    const holders = spec.parties.filter(
      (p) => p.roles.includes('label-holder') || p.roles.includes('aggregator'),
    )
    if (holders.length !== 1)
      return 'a training job names exactly one label holder (vertical) or aggregator (horizontal)'
    if (spec.parties.length < 2) return 'a joint training job needs at least two parties'
    for (const p of spec.parties) if (!p.dataset) return `party ${p.name} names no dataset`
    const registry = spec.mode === 'hfl' ? algorithms.horizontal : algorithms.vertical
    if (spec.mode !== 'hfl' && spec.mode !== 'mpc' && spec.mode !== 'he')
      return `mode ${spec.mode} is not a joint training mode here (mpc, he or hfl)`
    const alignment = params.data.alignment
    if (alignment !== undefined) {
      if (spec.mode === 'hfl') return 'params.alignment applies to vertical jobs (mpc, he) only'
      // Checked before the vote, so a bad reference is rejected before anyone commits (getSync: checks are
      // synchronous; the alignments sublevel holds one small record per job).
      const me = spec.parties.find((p) => p.peerId === deps.self)
      if (me) {
        const stored = deps.store.sub('alignments').getSync(alignment)
        const problem = storedAlignmentProblem(stored, {
          job: alignment,
          party: me.name,
          dataset: me.dataset!,
        })
        if (problem) return problem.message
      }
    }
    const overspend = deps.privacy.check(spec, deps.self)
    if (overspend) return overspend
    if (!registry.has(spec.algorithm))
      return `unknown ${spec.mode === 'hfl' ? 'horizontal' : 'vertical'} algorithm ${spec.algorithm} (known: ${[...registry.keys()].join(', ') || 'none'})`
    return undefined
  }
}

export function checkPsiSpec(spec: JobSpec): string | undefined {
  if (spec.parties.length < 2) return 'PSI needs at least two parties'
  for (const p of spec.parties) if (!p.dataset) return `party ${p.name} names no dataset`
  return undefined
}

/** The job's shared seed: from params, else from the job id, so every party derives the same one. */
function seedOf(spec: JobSpec, explicit?: number): number {
  return explicit ?? seedFromString(spec.id)
}

export async function loadPartyData(
  ctx: ExecutorContext,
  deps: Pick<TrainingDeps, 'datasets'>,
  withLabel: boolean,
): Promise<{ rec: DatasetRecord; ds: Dataset; features: string[] }> {
  const me = ctx.spec.parties.find((p) => p.name === ctx.self)!
  const rec = await deps.datasets.get(me.dataset!)
  if (!rec)
    throw new SyndicateError('ERR_DATASET_UNKNOWN', `dataset ${me.dataset} is not registered on ${ctx.self}`)
  ctx.progress({ phase: 'loading data', message: rec.name })
  const ds = deps.datasets.load(rec, withLabel)
  if (withLabel && !ds.y)
    throw new SyndicateError(
      'ERR_DATASET_NO_LABEL',
      `dataset ${rec.name} has no label column, but ${ctx.self} is the label holder`,
    )
  const features = me.columns ?? ds.featureNames
  const missing = features.filter((c) => !ds.featureNames.includes(c))
  if (missing.length)
    throw new SyndicateError(
      'ERR_DATASET_COLUMNS',
      `dataset ${rec.name} on ${ctx.self} lacks column(s) ${missing.join(', ')} named in the job`,
    )
  return { rec, ds, features }
}

/** Aligns this party's rows with every other party's by PSI; returns the rows in the common order. */
async function align(ctx: ExecutorContext, ds: Dataset, tagPrefix: string): Promise<Dataset> {
  ctx.progress({ phase: 'aligning customers (PSI)' })
  const { rows } = await runPsi(ctx.channel, ds.ids, { session: `${ctx.spec.id}/${tagPrefix}` })
  if (!rows || rows.length === 0)
    throw new SyndicateError('ERR_EMPTY_INTERSECTION', 'the parties have no customers in common')
  return subset(ds, rows)
}

/** What a `psi` job leaves on each party: the dataset it aligned and the aligned ids, in the common order. */
const StoredAlignment = z.object({ dataset: z.string(), ids: z.array(z.string()).min(1) })

export interface AlignmentRef {
  /** The psi job's id. */
  job: string
  /** This party's name and the dataset the training job names for it. */
  party: string
  dataset: string
}

/** Why a stored alignment cannot serve `ref` (without looking at the dataset's rows), or undefined. */
export function storedAlignmentProblem(
  stored: unknown,
  ref: AlignmentRef,
): { code: string; message: string } | undefined {
  if (stored === undefined)
    return {
      code: 'ERR_ALIGNMENT_UNKNOWN',
      message: `${ref.party} holds no alignment from job ${ref.job}; run a psi job between the parties first and name its id in params.alignment`,
    }
  const parsed = StoredAlignment.safeParse(stored)
  if (!parsed.success)
    return {
      code: 'ERR_ALIGNMENT_UNKNOWN',
      message: `job ${ref.job} left no PSI alignment on ${ref.party} (it is not a psi job); name a psi job's id in params.alignment`,
    }
  if (parsed.data.dataset !== ref.dataset)
    return {
      code: 'ERR_ALIGNMENT_MISMATCH',
      message: `psi job ${ref.job} aligned dataset ${parsed.data.dataset} on ${ref.party}, not ${ref.dataset} as this job names; run PSI on ${ref.dataset} first`,
    }
  return undefined
}

/**
 * The rows of a dataset (`fileIds`, in file order) that a stored alignment names, in the alignment's order.
 * Throws ERR_ALIGNMENT_UNKNOWN / _MISMATCH (see storedAlignmentProblem) and ERR_ALIGNMENT_STALE when an
 * aligned customer is no longer in the file.
 */
export function alignedRows(stored: unknown, ref: AlignmentRef, fileIds: readonly string[]): Uint32Array {
  const problem = storedAlignmentProblem(stored, ref)
  if (problem) throw new SyndicateError(problem.code, problem.message, { job: ref.job, party: ref.party })
  const { ids } = StoredAlignment.parse(stored)
  const row = new Map(fileIds.map((id, i) => [id, i]))
  return Uint32Array.from(ids, (id) => {
    const r = row.get(id)
    if (r === undefined)
      throw new SyndicateError(
        'ERR_ALIGNMENT_STALE',
        `customer ${id} of psi job ${ref.job}'s alignment is no longer in dataset ${ref.dataset} on ${ref.party} (the file changed since); run the psi job again`,
        { job: ref.job, party: ref.party },
      )
    return r
  })
}

/**
 * Loads the alignment psi job `job` left on this party, after checking that the job succeeded here, and checks
 * that every party loaded the same one (agreeOnAlignment).
 */
async function reuseAlignment(
  ctx: ExecutorContext,
  deps: Pick<TrainingDeps, 'store' | 'job'>,
  ds: Dataset,
  job: string,
  holder: string,
): Promise<Dataset> {
  ctx.progress({ phase: 'loading alignment', message: `psi job ${job}` })
  const me = ctx.spec.parties.find((p) => p.name === ctx.self)!
  const ref: AlignmentRef = { job, party: ctx.self, dataset: me.dataset! }
  const record = await deps.job(job)
  if (record?.spec.kind !== 'psi' || record.state !== 'succeeded')
    throw new SyndicateError(
      'ERR_ALIGNMENT_UNKNOWN',
      record
        ? `job ${job} on ${ctx.self} is a ${record.spec.kind} job in state ${record.state}, not a psi job that succeeded; name a succeeded psi job in params.alignment`
        : `${ctx.self} has no job ${job}; name a psi job that succeeded on every party in params.alignment`,
      { job, party: ctx.self },
    )
  const aligned = subset(ds, alignedRows(await deps.store.sub('alignments').get(job), ref, ds.ids))
  await agreeOnAlignment(ctx, holder, job, aligned.ids)
  return aligned
}

/**
 * Every party must train on the same customers in the same order. Each other party sends the label holder the
 * SHA-256 of its aligned id list (in order); the holder compares them with its own and tells everyone which
 * parties differ (itself, when at least two others agree with each other and not with it), and every party
 * fails the job naming them. The hash reveals nothing beyond the intersection every party already knows: an
 * honest party's list is the holder's own; a differing list shows only that it differs (a whole ordered list
 * of customer ids cannot be guessed from its hash).
 */
export async function agreeOnAlignment(
  ctx: Pick<ExecutorContext, 'channel' | 'self'>,
  holder: string,
  job: string,
  ids: readonly string[],
): Promise<void> {
  const mine = hashJson(ids)
  const others = ctx.channel.parties.filter((p) => p !== ctx.self)
  let differs: string[]
  if (ctx.self === holder) {
    const theirs = new Map<string, string>()
    for (const p of others) {
      const msg = await ctx.channel.recv(p, 'alignment/hash')
      theirs.set(p, decodeMessage(AlignmentHash, msg, `the alignment hash from ${p}`).sha256)
    }
    differs = others.filter((p) => theirs.get(p) !== mine)
    if (others.length >= 2 && differs.length === others.length && new Set(theirs.values()).size === 1)
      differs = [holder]
    await Promise.all(others.map((p) => ctx.channel.send(p, 'alignment/verdict', encodeMessage({ differs }))))
  } else {
    await ctx.channel.send(holder, 'alignment/hash', encodeMessage({ sha256: mine }))
    differs = decodeMessage(
      AlignmentVerdict,
      await ctx.channel.recv(holder, 'alignment/verdict'),
      `the alignment verdict from ${holder}`,
    ).differs
  }
  if (differs.length)
    throw new SyndicateError(
      'ERR_ALIGNMENT_MISMATCH',
      `the alignment of psi job ${job} held by ${differs.join(', ')} differs from the other parties' (other customers or another order); run the psi job again between all parties`,
      { job, parties: differs },
    )
}

const AlignmentHash = z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/) })
const AlignmentVerdict = z.strictObject({ differs: z.array(z.string().max(256)).max(1000) })

/** The plaintext model family of a vertical algorithm, for the label-holder-alone baseline. */
const ALONE_KIND: Record<string, Model['kind']> = {
  'vertical-ss-lr': 'lr',
  'vertical-he-lr': 'lr',
  secureboost: 'gbdt',
  'vertical-split-nn': 'mlp',
}

/** The family the label holder alone trains in plaintext for `algorithm` (GBDT for algorithms not listed). */
export function aloneModelKind(algorithm: string): Model['kind'] {
  return ALONE_KIND[algorithm] ?? 'gbdt'
}

export function psiExecutor(deps: TrainingDeps): Executor {
  return async (ctx) => {
    const { ds } = await loadPartyData(ctx, deps, false)
    const aligned = await align(ctx, ds, 'psi')
    await deps.store.sub('alignments').put(ctx.spec.id, {
      dataset: ctx.spec.parties.find((p) => p.name === ctx.self)!.dataset,
      ids: aligned.ids,
    })
    return {
      metrics: { intersection: aligned.ids.length, local_rows: ds.ids.length },
      resultHash: hashJson({ job: ctx.spec.id, intersection: aligned.ids.length }),
    }
  }
}

export function trainExecutor(deps: TrainingDeps): Executor {
  return async (ctx) => {
    const params = TrainParams.parse(ctx.spec.params)
    const holder = labelHolderOf(ctx.spec)!
    const isHolder = ctx.self === holder
    const seed = seedOf(ctx.spec, params.seed)
    const horizontal = ctx.spec.mode === 'hfl'
    const { ds, features } = await loadPartyData(ctx, deps, isHolder || horizontal)
    await agreeOnSchema(ctx, features, horizontal)
    const jctx = (phase: string): JointContext => ({
      channel: ctx.channel,
      self: ctx.self,
      labelHolder: holder,
      tagPrefix: `${phase}/`,
      params: params.algorithm,
      seed,
      signal: ctx.signal,
      progress: ctx.progress,
    })
    let part: ModelPart
    let metrics: Record<string, number> | undefined
    if (horizontal) {
      const algo = deps.algorithms.horizontal.get(ctx.spec.algorithm)!
      const local: LocalData = { X: featureMatrix(ds, features), rows: ds.ids.length, features, y: ds.y }
      ctx.progress({ phase: 'training', message: algo.name })
      part = await algo.train(jctx('train'), local)
      if (isHolder && params.evaluation) {
        const rec = await deps.datasets.get(params.evaluation)
        if (!rec)
          throw new SyndicateError(
            'ERR_DATASET_UNKNOWN',
            `evaluation dataset ${params.evaluation} is not registered on ${ctx.self}`,
          )
        const ev = deps.datasets.load(rec, true)
        const scores = algo.predict(part, { X: featureMatrix(ev, features), rows: ev.ids.length, features })
        metrics = scoreMetrics(ev.y!, scores)
        metrics.rows_evaluated = ev.ids.length
      }
    } else {
      const algo = deps.algorithms.vertical.get(ctx.spec.algorithm)!
      const aligned = params.alignment
        ? await reuseAlignment(ctx, deps, ds, params.alignment, holder)
        : await align(ctx, ds, 'psi')
      const n = aligned.ids.length
      // The label holder draws the split (it alone knows the labels) and tells the others which positions are
      // test rows: a random, class-balanced subset, which says nothing about any single row's label. It draws
      // it over its own file order, not the PSI order (which changes with every run's keys), so the same seed
      // gives the same split every time: the learning core's split when every row is aligned.
      let testMask: Uint8Array
      if (isHolder) {
        const fileRow = new Map(ds.ids.map((id, i) => [id, i]))
        const order = Array.from({ length: n }, (_, k) => k).sort(
          (a, b) => fileRow.get(aligned.ids[a])! - fileRow.get(aligned.ids[b])!,
        )
        const yInFileOrder = Uint8Array.from(order, (k) => aligned.y![k])
        const { test } = stratifiedSplitIndices(yInFileOrder, params.testFraction, seed)
        testMask = new Uint8Array(n)
        for (const t of test) testMask[order[t]] = 1
        await Promise.all(
          ctx.channel.parties
            .filter((p) => p !== ctx.self)
            .map((p) => ctx.channel.send(p, 'split/test-mask', testMask)),
        )
      } else {
        testMask = await ctx.channel.recv(holder, 'split/test-mask')
        if (testMask.length !== n)
          throw new SyndicateError(
            'ERR_PROTOCOL_VIOLATION',
            `the test mask covers ${testMask.length} rows, not ${n}`,
          )
      }
      const trainIdx: number[] = []
      const testIdx: number[] = []
      for (let i = 0; i < n; i++) (testMask[i] ? testIdx : trainIdx).push(i)
      // Each party keeps its own aligned ids and the split, so the run can be audited and reproduced locally.
      await deps.store.sub('alignments').put(ctx.spec.id, { ids: aligned.ids, test: testIdx })
      const train = subset(aligned, trainIdx)
      const test = subset(aligned, testIdx)
      const toLocal = (d: Dataset): LocalData => ({
        X: featureMatrix(d, features),
        rows: d.ids.length,
        features,
        ...(isHolder ? { y: d.y } : {}),
      })
      ctx.progress({ phase: 'training', message: algo.name })
      part = await algo.train(jctx('train'), toLocal(train))
      ctx.progress({ phase: 'evaluating' })
      const scores = await algo.predict(jctx('eval'), part, toLocal(test))
      if (isHolder) {
        metrics = scoreMetrics(test.y!, scores!)
        metrics.rows_aligned = n
        metrics.rows_train = train.ids.length
        metrics.rows_test = test.ids.length
        if (params.compareAlone) {
          const kind = aloneModelKind(ctx.spec.algorithm)
          ctx.progress({ phase: 'label holder alone (plaintext baseline)', message: kind })
          const alone = trainModel(kind, train, { seed }, features)
          metrics.auc_label_holder_alone = auc(test.y!, scoreDataset(alone, test))
        }
      }
    }
    // Every party records the same metrics: the label holder (or aggregator) shares them.
    if (isHolder) {
      await Promise.all(
        ctx.channel.parties
          .filter((p) => p !== ctx.self)
          .map((p) => ctx.channel.send(p, 'result/metrics', encodeMessage(metrics ?? {}))),
      )
    } else {
      metrics = decodeMessage(
        MetricsSchema,
        await ctx.channel.recv(holder, 'result/metrics'),
        `the metrics from ${holder}`,
      )
    }
    const dp = (part.params as { dp?: { epsilon?: number; delta?: number } } | undefined)?.dp
    if (dp?.epsilon !== undefined && dp.delta !== undefined) {
      const dataset = ctx.spec.parties.find((p) => p.name === ctx.self)!.dataset!
      await deps.privacy.record(ctx.spec.id, dataset, { epsilon: dp.epsilon, delta: dp.delta })
    }
    const modelHash = hashJson(part)
    // A horizontal job leaves every party with the whole model: register it for real-time scoring, with its
    // lineage (this job, the dataset schema it saw, the agreed metrics). Vertical models stay split.
    const whole = (part.params as { model?: Model } | undefined)?.model
    if (horizontal && whole && ['lr', 'gbdt', 'mlp'].includes(whole.kind)) {
      const rec = await deps.datasets.get(ctx.spec.parties.find((p) => p.name === ctx.self)!.dataset!)
      const version = await deps.models.register({
        id: ctx.spec.algorithm,
        model: whole,
        lineage: {
          trainingJobId: ctx.spec.id,
          datasetSchemaHashes: rec ? [rec.schemaHash] : [],
          metrics: metrics ?? {},
        },
        description: `trained by job ${ctx.spec.id}`,
      })
      ctx.progress({ phase: 'registered', message: `model ${ctx.spec.algorithm} version ${version.version}` })
    }
    await deps.store
      .sub('model-parts')
      .put(ctx.spec.id, { algorithm: ctx.spec.algorithm, part, createdAt: new Date().toISOString() })
    return {
      metrics: metrics ?? {},
      modelHash,
      resultHash: hashJson({ job: ctx.spec.id, algorithm: ctx.spec.algorithm, metrics: metrics ?? {} }),
      summary: {
        algorithm: ctx.spec.algorithm,
        features: part.features.length,
        // Which plaintext family `auc_label_holder_alone` measures (metrics hold numbers only).
        ...(params.compareAlone && !horizontal ? { aloneModel: aloneModelKind(ctx.spec.algorithm) } : {}),
      },
    }
  }
}

const MetricsSchema = z.record(z.string().max(64), z.number())
const SchemaMessage = z.strictObject({ features: z.union([z.string().max(64), z.number().int()]) })

/**
 * Before any data-dependent step: horizontal parties must hold the same columns; vertical parties must not
 * repeat each other's column names (a sign that two parties registered the same slice).
 */
async function agreeOnSchema(ctx: ExecutorContext, features: string[], horizontal: boolean): Promise<void> {
  const ch: PartyChannel = ctx.channel
  const others = ch.parties.filter((p) => p !== ctx.self)
  const mine = horizontal ? hashJson(features) : ''
  await Promise.all(
    others.map((p) => ch.send(p, 'schema', encodeMessage({ features: horizontal ? mine : features.length }))),
  )
  for (const p of others) {
    const theirs = decodeMessage(SchemaMessage, await ch.recv(p, 'schema'), `the schema summary from ${p}`)
    if (horizontal && theirs.features !== mine) {
      throw new SyndicateError(
        'ERR_SCHEMA_MISMATCH',
        `the feature columns of ${p} differ from those of ${ctx.self}; horizontal training needs identical schemas`,
      )
    }
  }
}
