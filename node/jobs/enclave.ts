import { createPrivateKey, type KeyObject } from 'node:crypto'
import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { SyndicateError } from '../../crypto/errors.ts'
import { x25519RawPublic } from '../../crypto/psi/x25519.ts'
import { appraise } from '../../enclave/appraisal.ts'
import { destroyedSigned, openModel, prepareUpload } from '../../enclave/client.ts'
import type { EnclaveCluster } from '../../enclave/cluster.ts'
import { evidenceHash } from '../../enclave/evidence.ts'
import {
  dataOwners,
  labelHolder,
  modelRecipients,
  specHashOf,
  TEE_ALGORITHMS,
  type TeeSpec,
  TeeSpecSchema,
} from '../../enclave/release.ts'
import { TeeParamsSchema } from '../../enclave/runtime/engine.ts'
import { AttestationError, attest, type Claims, NonceBook, SimVerifier } from '../../enclave/verifier.ts'
import { ResultSchema, Tags, UploadHeaderSchema } from '../../enclave/wire.ts'
import { selectColumns } from '../../learning/data/dataset.ts'
import type { Model } from '../../learning/models/types.ts'
import { decodeMessage, encodeMessage } from '../../protocol/define.ts'
import type { JobSpec } from '../../protocol/jobs.ts'
import type { DatasetRegistry } from '../services/datasets/registry.ts'
import type { NodeStore } from '../store.ts'
import { type Executor, type ExecutorContext, hashJson, type SpecCheck } from './executors.ts'
import type { Policy } from './policy.ts'
import { loadPartyData } from './training.ts'

/**
 * `train` jobs in mode `tee`: the data owners attest the enclave host's enclave, upload their rows encrypted
 * to it with signed usage policies, and get back the metrics, the model (recipients only) and the enclave's
 * signed record that the data was destroyed; the enclave host relays between its parties and its enclave
 * cluster and keeps the model sealed to the cluster for online prediction. Owners keep, per job, the attested
 * enclave key (to seal scoring rows) and, recipients, the key that opens the model and scores.
 */
export interface EnclaveJobDeps {
  datasets: DatasetRegistry
  store: NodeStore
  privateKey: PrivateKey
  policy: () => Policy
  recorder: () => {
    append(type: string, body: Record<string, unknown>, o: { jobId?: string }): Promise<unknown>
  }
  /** The enclaves this node hosts, if it is an enclave host. */
  cluster?: EnclaveCluster
  log: Logger
}

/** What an owner keeps of a tee job. */
export interface OwnerRecord {
  host: string
  clusterKey: string
  measurement: string
  /** PKCS#8 (base64) of the X25519 key that opens the model and scores; recipients only. */
  replyKey?: string
  model?: Model
}

/** What the enclave host keeps of a tee job: the model sealed to its cluster. */
export interface HostRecord {
  sealedModel: string
  recipients: string[]
}

export function enclaveHostOf(spec: Pick<JobSpec, 'parties'>): JobSpec['parties'][number] | undefined {
  return spec.parties.find((p) => p.roles.includes('enclave-host'))
}

export function checkTeeSpec(
  deps: Pick<EnclaveJobDeps, 'policy' | 'cluster'>,
  selfPeerId: string,
): SpecCheck {
  return (spec) => {
    const parsed = TeeSpecSchema.safeParse(spec)
    if (!parsed.success) {
      const i = parsed.error.issues[0]
      if (i?.path[0] === 'algorithm')
        return `enclave jobs train ${TEE_ALGORITHMS.join(', ')}; ${spec.algorithm} is not one of them`
      return `not a valid enclave job: ${i?.path.join('.')} ${i?.message}`
    }
    const tee = parsed.data
    const hosts = spec.parties.filter((p) => p.roles.includes('enclave-host'))
    if (hosts.length !== 1) return 'an enclave job names exactly one enclave-host party'
    if (hosts[0].dataset) return 'the enclave host uploads no data of its own'
    if (!labelHolder(tee)) return 'an enclave job names a label holder'
    if (dataOwners(tee).length < 2) return 'an enclave job joins the rows of at least two data owners'
    const params = TeeParamsSchema.safeParse(spec.params)
    if (!params.success)
      return `invalid params: ${params.error.issues[0]?.path.join('.')} ${params.error.issues[0]?.message}`
    const owners = new Set(dataOwners(tee).map((o) => o.name))
    const strangers = modelRecipients(tee).filter((r) => !owners.has(r))
    if (strangers.length)
      return `model recipients must be data owners (they sign for their key): ${strangers.join(', ')}`
    const me = spec.parties.find((p) => p.peerId === selfPeerId)
    if (me?.roles.includes('enclave-host') && !deps.cluster)
      return 'this node hosts no enclave (set enclave.instances in syndicate.yaml)'
    if (me?.dataset) {
      const pol = deps.policy().enclave
      if (!pol.algorithms.includes(spec.algorithm as never))
        return `this node's enclave policy does not allow algorithm ${spec.algorithm} (it allows ${pol.algorithms.join(', ')})`
      if (pol.recipients !== '*') {
        const extra = modelRecipients(tee).filter((r) => !(pol.recipients as string[]).includes(r))
        if (extra.length) return `this node's enclave policy does not let ${extra.join(', ')} receive models`
      }
    }
    return undefined
  }
}

export function teeExecutor(deps: EnclaveJobDeps): Executor {
  const nonces = new NonceBook()
  const verifier = new SimVerifier()
  return async (ctx) => {
    const host = enclaveHostOf(ctx.spec)!
    const tee = TeeSpecSchema.parse(ctx.spec)
    return ctx.self === host.name ? runHost(ctx, tee, deps) : runOwner(ctx, tee, deps, host, nonces, verifier)
  }
}

async function runOwner(
  ctx: ExecutorContext,
  tee: TeeSpec,
  deps: EnclaveJobDeps,
  host: JobSpec['parties'][number],
  nonces: NonceBook,
  verifier: SimVerifier,
) {
  const { spec } = ctx
  const rec = deps.recorder()
  ctx.progress({ phase: 'attesting the enclave' })
  let claims: Claims | undefined
  let seen = '0'.repeat(64)
  try {
    const r = await attest(
      verifier,
      nonces,
      async (nonce) => {
        await ctx.channel.send(host.name, Tags.attest, nonce)
        return JSON.parse(new TextDecoder().decode(await ctx.channel.recv(host.name, Tags.evidence)))
      },
      host.peerId,
    )
    claims = r.claims
    seen = evidenceHash(r.evidence)
    appraise(claims, deps.policy().enclave.appraisal)
  } catch (e) {
    if (!(e instanceof AttestationError)) throw e
    await rec.append(
      'attestation',
      {
        enclaveId: claims?.instanceId ?? host.name,
        measurement: claims?.measurement ?? '0'.repeat(64),
        evidenceHash: seen,
        verdict: 'rejected',
        reason: e.message.slice(0, 1000),
      },
      { jobId: spec.id },
    )
    throw new SyndicateError(
      'ERR_ATTESTATION',
      `the enclave of ${host.name} is not trusted: ${e.message}`,
      e.details,
    )
  }
  await rec.append(
    'attestation',
    { enclaveId: claims.instanceId, measurement: claims.measurement, evidenceHash: seen, verdict: 'trusted' },
    { jobId: spec.id },
  )
  const me = spec.parties.find((p) => p.name === ctx.self)!
  const isHolder = labelHolder(tee) === ctx.self
  const { ds, features } = await loadPartyData(ctx, deps, isHolder)
  ctx.progress({ phase: 'encrypting rows for the enclave', message: `${ds.ids.length} rows` })
  const pol = deps.policy().enclave
  const upload = await prepareUpload({
    claims,
    rows: selectColumns(ds, features),
    signingKey: deps.privateKey,
    policy: {
      job: spec.id,
      specHash: specHashOf(spec),
      owner: me.peerId,
      party: me.name,
      algorithms: pol.algorithms,
      recipients: pol.recipients === '*' ? modelRecipients(tee) : pol.recipients,
      notAfter: Date.parse(spec.deadline),
    },
  })
  await ctx.channel.send(
    host.name,
    Tags.upload,
    encodeMessage({
      policy: upload.policy,
      wrappedKey: Buffer.from(upload.wrappedKey).toString('base64'),
      chunks: upload.chunks.length,
    }),
  )
  for (const [i, c] of upload.chunks.entries()) {
    ctx.signal.throwIfAborted()
    await ctx.channel.send(host.name, Tags.chunk(i), c)
    ctx.progress({ phase: 'uploading', done: i + 1, total: upload.chunks.length })
  }
  ctx.progress({ phase: 'training in the enclave' })
  const result = decodeMessage(
    ResultSchema,
    await ctx.channel.recv(host.name, Tags.result),
    `the enclave result from ${host.name}`,
  )
  const { record, signature } = result.destroyed
  if (record.job !== spec.id || !destroyedSigned(record, signature, claims))
    throw new SyndicateError(
      'ERR_ENCLAVE_RECORD',
      `the enclave's "destroyed" record for job ${spec.id} is not signed by the attested enclave`,
    )
  await rec.append(
    'enclave.destroyed',
    { record, enclaveKey: claims.publicKey, signature },
    { jobId: spec.id },
  )
  const stored: OwnerRecord = {
    host: host.name,
    clusterKey: claims.publicKey,
    measurement: claims.measurement,
  }
  if (result.model) {
    stored.model = openModel(upload.replyKey, Buffer.from(result.model, 'base64'), spec.id)
    if (hashJson(stored.model) !== result.modelHash)
      throw new SyndicateError(
        'ERR_ENCLAVE_RECORD',
        'the model received does not match the announced model hash',
      )
    stored.replyKey = upload.replyKey.priv.export({ format: 'der', type: 'pkcs8' }).toString('base64')
  }
  await deps.store.sub<OwnerRecord>('enclave-jobs').put(spec.id, stored)
  return outcome(spec.id, result.metrics, result.modelHash, record.owners, !!result.model)
}

async function runHost(ctx: ExecutorContext, tee: TeeSpec, deps: EnclaveJobDeps) {
  const { spec } = ctx
  const cluster = deps.cluster
  if (!cluster) throw new SyndicateError('ERR_ENCLAVE_UNAVAILABLE', 'this node hosts no enclave')
  const owners = dataOwners(tee)
  let ran = false
  try {
    await cluster.openJob(spec.id, spec)
    await Promise.all(
      owners.map(async (o) => {
        const nonce = await ctx.channel.recv(o.name, Tags.attest)
        if (nonce.length !== 32) throw new SyndicateError('ERR_INVALID_MESSAGE', `${o.name} sent a bad nonce`)
        await ctx.channel.send(o.name, Tags.evidence, encodeMessage(await cluster.evidence(spec.id, nonce)))
      }),
    )
    ctx.progress({ phase: 'receiving encrypted rows' })
    await Promise.all(
      owners.map(async (o) => {
        const h = decodeMessage(
          UploadHeaderSchema,
          await ctx.channel.recv(o.name, Tags.upload),
          `the upload header from ${o.name}`,
        )
        await cluster.upload(spec.id, o.name, h.policy, Buffer.from(h.wrappedKey, 'base64'), h.chunks)
        // Chunks go on to the enclave as they arrive; its replies are awaited together.
        const forwarded: Promise<void>[] = []
        for (let i = 0; i < h.chunks; i++) {
          const f = cluster.chunk(spec.id, o.name, i, await ctx.channel.recv(o.name, Tags.chunk(i)))
          f.catch(() => {}) // handled by Promise.all below; not an unhandled rejection meanwhile
          forwarded.push(f)
        }
        await Promise.all(forwarded)
      }),
    )
    ran = true
    const out = await cluster.run(spec.id, (phase) => ctx.progress({ phase: `enclave: ${phase}` }))
    await deps.store.sub<HostRecord>('enclave-models').put(spec.id, {
      sealedModel: Buffer.from(out.sealedModel).toString('base64'),
      recipients: Object.keys(out.models),
    })
    await deps
      .recorder()
      .append(
        'enclave.destroyed',
        { record: out.destroyed.record, enclaveKey: cluster.publicKey!, signature: out.destroyed.signature },
        { jobId: spec.id },
      )
    await Promise.all(
      owners.map((o) =>
        ctx.channel.send(
          o.name,
          Tags.result,
          encodeMessage({
            metrics: out.metrics,
            modelHash: out.modelHash,
            ...(out.models[o.name] ? { model: Buffer.from(out.models[o.name]).toString('base64') } : {}),
            destroyed: out.destroyed,
          }),
        ),
      ),
    )
    return outcome(spec.id, out.metrics, out.modelHash, out.destroyed.record.owners, false)
  } finally {
    if (!ran) await cluster.drop(spec.id)
  }
}

/** The agreed outcome: equal on every party (recipients and others alike). */
function outcome(
  job: string,
  metrics: Record<string, number>,
  modelHash: string,
  owners: { party: string; uploadHash: string; rows: number }[],
  modelReceived: boolean,
) {
  return {
    metrics,
    modelHash,
    resultHash: hashJson({ job, metrics, modelHash, owners }),
    summary: { mode: 'tee', modelReceived, rows: Object.fromEntries(owners.map((o) => [o.party, o.rows])) },
  }
}

/** An owner's stored reply key as a key pair (for opening scores). */
export function replyKeyOf(rec: OwnerRecord): { priv: KeyObject; pub: Uint8Array } | undefined {
  if (!rec.replyKey) return undefined
  const priv = createPrivateKey({ key: Buffer.from(rec.replyKey, 'base64'), format: 'der', type: 'pkcs8' })
  return { priv, pub: x25519RawPublic(priv) }
}
