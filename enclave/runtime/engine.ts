/**
 * What runs inside the enclave: its keys (in memory only), key sync with other instances of the cluster,
 * jobs (encrypted uploads → key release → join → train → outputs → wipe → signed "destroyed" record) and
 * online prediction with the models it trained. No I/O here: `main.ts` feeds it IPC requests, and unit tests
 * drive it in process.
 */
import { createHash, randomBytes } from 'node:crypto'
import { ed25519 } from '@noble/curves/ed25519.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { aeadOpen, aeadSeal } from '../../crypto/aead.ts'
import { type BoxKeyPair, newBoxKeyPair, openBox, sealBox } from '../../crypto/box.ts'
import { canonicalBytes, signingBytes } from '../../crypto/canonical.ts'
import { SyndicateError } from '../../crypto/errors.ts'
import { x25519PrivateKey, x25519RawPublic } from '../../crypto/psi/x25519.ts'
import { type Dataset, featureMatrix, joinOnId, prefixColumns } from '../../learning/data/dataset.ts'
import { stratifiedSplit } from '../../learning/data/split.ts'
import { scoreMetrics } from '../../learning/metrics/summary.ts'
import { predictProba } from '../../learning/models/predict.ts'
import { trainModel } from '../../learning/models/train.ts'
import type { Model } from '../../learning/models/types.ts'
import { seedFromString } from '../../learning/random.ts'
import { appraise } from '../appraisal.ts'
import { type Evidence, reportData } from '../evidence.ts'
import { type EnclaveConfig, measure } from '../measurement.ts'
import { decodeTable, decryptChunks } from '../payload.ts'
import {
  admitJob,
  dataOwners,
  labelHolder,
  modelRecipients,
  policyHash,
  type SignedUsagePolicy,
  specHashOf,
  type TeeSpec,
  TeeSpecSchema,
  type UsagePolicy,
  usagePolicySigned,
} from '../release.ts'
import { NonceBook, SimVerifier } from '../verifier.ts'

/** Launch attributes the platform reports in evidence; the enclave knows them as SGX code reads its report. */
export interface EngineLaunch {
  instanceId: string
  signer: string
  productId: number
  svn: number
  debug: boolean
  /** The platform this instance runs on: key sync only trusts evidence from the same platform. */
  platformKey: string
  platformHost: string
}

export const TeeParamsSchema = z.strictObject({
  testFraction: z.number().gt(0).lt(1).default(0.2),
  seed: z.number().int().optional(),
  /** Options of the learning core's trainer for the chosen model kind. */
  algorithm: z.record(z.string(), z.unknown()).default({}),
})

/** The record the enclave signs when it has destroyed a job's data. */
export interface DestroyedRecord {
  v: 1
  job: string
  specHash: string
  instanceId: string
  measurement: string
  owners: { party: string; uploadHash: string; rows: number }[]
  destroyedAt: number
}

/** Signed with the cluster's Ed25519 key; the governance log's audit checks it with the same domain. */
export const DESTROYED_DOMAIN = 'enclave/destroyed/v1'

export function destroyedBytes(r: DestroyedRecord): Uint8Array {
  return signingBytes(DESTROYED_DOMAIN, r)
}

export interface JobOutputs {
  metrics: Record<string, number>
  modelHash: string
  /** The model sealed to each recipient's reply key. */
  models: Record<string, Uint8Array>
  /** The model and who may ask it for scores, sealed to the cluster: any instance can serve predictions. */
  sealedModel: Uint8Array
  destroyed: { record: DestroyedRecord; signature: string }
}

export interface Inventory {
  jobs: number
  uploads: number
  ciphertextBytes: number
  dataKeys: number
  plaintextRows: number
  models: number
}

interface Upload {
  policy: SignedUsagePolicy
  wrappedKey: Uint8Array
  chunks: (Uint8Array | undefined)[]
}

interface JobState {
  spec: TeeSpec
  specHash: string
  uploads: Map<string, Upload>
  bytes: number
}

interface ServedModel {
  model: Model
  /** Recipient party → its reply key (X25519, hex): the only parties that get scores. */
  replyKeys: Record<string, string>
}

const CLUSTER_SECRET_BYTES = 32

function digestOf(chunks: Uint8Array[]): string {
  const h = createHash('sha256')
  for (const c of chunks) h.update(c)
  return h.digest('hex')
}

/** Plaintext a run holds, so that every exit path wipes all of it. */
interface Held {
  tables: Dataset[]
  keys: Uint8Array[]
  rows: number
}

export class EnclaveEngine {
  readonly launch: EngineLaunch
  readonly config: EnclaveConfig
  readonly measurement: string
  private readonly instanceKey: BoxKeyPair = newBoxKeyPair()
  private cluster?: { box: BoxKeyPair; signSecret: Uint8Array; sealKey: Uint8Array; secret: Uint8Array }
  private readonly nonces = new NonceBook()
  private readonly jobs = new Map<string, JobState>()
  private readonly served = new Map<string, ServedModel>()
  /** Plaintext rows live only inside `run`; counted so that `inventory` can prove they are gone. */
  private liveRows = 0
  private liveKeys = 0

  constructor(launch: EngineLaunch, config: EnclaveConfig, bundle?: string) {
    this.launch = launch
    this.config = config
    // The enclave measures itself, as SGX code can read MRENCLAVE from its own report.
    this.measurement = measure(config, bundle)
  }

  /** Cluster public key (X25519 ‖ Ed25519, hex), once the instance holds the cluster key. */
  get clusterPublicKey(): string | undefined {
    if (!this.cluster) return undefined
    return bytesToHex(concatBytes(this.cluster.box.pub, ed25519.getPublicKey(this.cluster.signSecret)))
  }

  /** The instance's own key, used only to receive the cluster key: X25519 ‖ 32 zero bytes (it signs nothing). */
  private get instancePublicKey(): string {
    return bytesToHex(concatBytes(this.instanceKey.pub, new Uint8Array(32)))
  }

  /** Public key and report data for evidence: the cluster key for data owners, the instance key for key sync. */
  report(nonce: Uint8Array, key: 'cluster' | 'instance'): { publicKey: string; reportData: string } {
    const publicKey = key === 'cluster' ? this.clusterPublicKey : this.instancePublicKey
    if (!publicKey)
      throw new SyndicateError(
        'ERR_ENCLAVE_NO_CLUSTER_KEY',
        'this enclave instance has not joined its cluster yet',
      )
    return { publicKey, reportData: reportData(hexToBytes(publicKey), nonce) }
  }

  /** First instance of a cluster: generates the cluster secret. */
  createCluster(): string {
    if (this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_STATE', 'this instance already holds a cluster key')
    this.setClusterSecret(new Uint8Array(randomBytes(CLUSTER_SECRET_BYTES)))
    return this.clusterPublicKey!
  }

  private setClusterSecret(secret: Uint8Array): void {
    const derive = (purpose: string) =>
      hkdf(sha256, secret, undefined, utf8ToBytes(`syndicate/enclave/cluster/${purpose}`), 32)
    const boxScalar = derive('box')
    const priv = x25519PrivateKey(boxScalar)
    boxScalar.fill(0)
    this.cluster = {
      box: { priv, pub: x25519RawPublic(priv) },
      signSecret: derive('sign'),
      sealKey: derive('seal'),
      secret,
    }
  }

  /** Key sync, exporting side: a nonce the joining instance's evidence must bind. */
  syncNonce(): Uint8Array {
    return this.nonces.issue()
  }

  /**
   * Key sync, exporting side: verifies the joining instance's evidence — same platform, same measurement and
   * signer, no lower security version, not debug unless this instance is — and seals the cluster secret to it.
   */
  async exportClusterKey(evidence: Evidence, nonce: Uint8Array): Promise<Uint8Array> {
    if (!this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_NO_CLUSTER_KEY', 'this instance holds no cluster key')
    this.nonces.spend(nonce)
    const claims = await new SimVerifier().verify(evidence, nonce, this.launch.platformHost)
    if (claims.platform.key !== this.launch.platformKey)
      throw new SyndicateError('ERR_ATTESTATION', 'the joining instance runs on another platform', {
        check: 'platform',
      })
    appraise(claims, {
      measurements: [this.measurement],
      signers: [this.launch.signer],
      productId: this.launch.productId,
      minSvn: this.launch.svn,
      allowDebug: this.launch.debug,
    })
    return sealBox(hexToBytes(claims.publicKey).subarray(0, 32), this.cluster.secret, 'cluster-key')
  }

  /** Key sync, joining side. */
  importClusterKey(box: Uint8Array): string {
    if (this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_STATE', 'this instance already holds a cluster key')
    const secret = openBox(this.instanceKey, box, 'cluster-key')
    if (!secret || secret.length !== CLUSTER_SECRET_BYTES)
      throw new SyndicateError(
        'ERR_ENCLAVE_KEY_SYNC',
        'the cluster key box does not open with this instance key',
      )
    this.setClusterSecret(secret)
    return this.clusterPublicKey!
  }

  openJob(rawSpec: unknown): string {
    const parsed = TeeSpecSchema.safeParse(rawSpec)
    if (!parsed.success)
      throw new SyndicateError(
        'ERR_ENCLAVE_JOB',
        `not an enclave training job: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`,
      )
    const spec = parsed.data
    if (this.jobs.has(spec.id)) return this.jobs.get(spec.id)!.specHash
    if (this.jobs.size >= this.config.maxJobs)
      throw new SyndicateError('ERR_ENCLAVE_BUSY', `the enclave already holds ${this.config.maxJobs} jobs`)
    if (!labelHolder(spec)) throw new SyndicateError('ERR_ENCLAVE_JOB', 'the job names no label holder')
    const params = TeeParamsSchema.safeParse(spec.params)
    if (!params.success)
      throw new SyndicateError('ERR_ENCLAVE_JOB', `invalid params: ${params.error.issues[0]?.message}`)
    const specHash = specHashOf(rawSpec)
    this.jobs.set(spec.id, { spec, specHash, uploads: new Map(), bytes: 0 })
    return specHash
  }

  private job(id: string): JobState {
    const j = this.jobs.get(id)
    if (!j) throw new SyndicateError('ERR_ENCLAVE_JOB', `no open enclave job ${id}`)
    return j
  }

  upload(
    jobId: string,
    party: string,
    policy: SignedUsagePolicy,
    wrappedKey: Uint8Array,
    chunks: number,
  ): void {
    const j = this.job(jobId)
    if (!dataOwners(j.spec).some((o) => o.name === party))
      throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `${party} is not a data owner of job ${jobId}`)
    if (policy.policy.party !== party)
      throw new SyndicateError(
        'ERR_ENCLAVE_UPLOAD',
        `the usage policy uploaded for ${party} is ${policy.policy.party}'s`,
      )
    if (chunks < 1 || chunks * 1024 * 1024 > this.config.maxUploadBytes * 2)
      throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `${chunks} chunks is out of range`)
    j.uploads.set(party, { policy, wrappedKey, chunks: new Array(chunks).fill(undefined) })
  }

  chunk(jobId: string, party: string, index: number, box: Uint8Array): void {
    const j = this.job(jobId)
    const u = j.uploads.get(party)
    if (!u) throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `${party} sent a chunk before its upload header`)
    if (index < 0 || index >= u.chunks.length)
      throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `chunk ${index} of ${party} is out of range`)
    j.bytes += box.length - (u.chunks[index]?.length ?? 0)
    if (j.bytes > this.config.maxUploadBytes * dataOwners(j.spec).length)
      throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `job ${jobId} exceeds the enclave's upload limit`)
    u.chunks[index] = box
  }

  /** Key release, decryption, join, training, evaluation, outputs; the job's data is wiped whatever happens. */
  async run(jobId: string, progress: (phase: string) => void = () => {}): Promise<JobOutputs> {
    const j = this.job(jobId)
    if (!this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_NO_CLUSTER_KEY', 'this instance holds no cluster key')
    const held: Held = { tables: [], keys: [], rows: 0 }
    const { tables, keys } = held
    try {
      const owners = dataOwners(j.spec)
      const policies = new Map<string, UsagePolicy>()
      for (const o of owners) {
        const u = j.uploads.get(o.name)
        if (!u) throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `${o.name} has not uploaded its rows`)
        const missing = u.chunks.indexOf(undefined)
        if (missing >= 0)
          throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `chunk ${missing + 1} of ${o.name} never arrived`)
        if (!(await usagePolicySigned(u.policy)))
          throw new SyndicateError(
            'ERR_KEY_RELEASE',
            `the usage policy of ${o.name} is not signed by ${o.name}`,
            {
              party: o.name,
            },
          )
        policies.set(o.name, u.policy.policy)
      }
      progress('key release')
      admitJob(j.spec, j.specHash, policies, this.measurement, Date.now())
      // Every policy admits the job: only now are data keys unwrapped.
      for (const o of owners) {
        const u = j.uploads.get(o.name)!
        const key = openBox(this.cluster.box, u.wrappedKey, 'data-key', policyHash(u.policy.policy))
        if (!key)
          throw new SyndicateError(
            'ERR_KEY_RELEASE',
            `the data key of ${o.name} does not unwrap: it was wrapped to another enclave or under another policy`,
            { party: o.name },
          )
        keys.push(key)
        this.liveKeys++
        progress(`decrypting ${o.name}`)
        const plain = decryptChunks(key, u.chunks as Uint8Array[], jobId, o.name)
        try {
          // Columns are qualified by owner (`bank-a.x0`): parties' files may reuse column names.
          const t = prefixColumns(decodeTable(plain, o.name), `${o.name}.`)
          tables.push(t)
          held.rows += t.ids.length
          this.liveRows += t.ids.length
        } finally {
          plain.fill(0)
        }
      }
      const columns = new Map(
        owners.map((o, i) => [o.name, tables[i].featureNames.map((f) => f.slice(o.name.length + 1))]),
      )
      admitJob(j.spec, j.specHash, policies, this.measurement, Date.now(), columns)
      const holder = labelHolder(j.spec)!
      const hi = owners.findIndex((o) => o.name === holder)
      if (hi < 0 || !tables[hi].y)
        throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `the label holder ${holder} uploaded no label column`)
      progress('joining on id')
      let joined = tables[hi]
      for (let i = 0; i < tables.length; i++) if (i !== hi) joined = joinOnId(joined, tables[i])
      if (joined !== tables[hi]) tables.push(joined)
      if (joined.ids.length === 0)
        throw new SyndicateError('ERR_EMPTY_INTERSECTION', 'the parties have no customers in common')
      const params = TeeParamsSchema.parse(j.spec.params)
      const seed = params.seed ?? seedFromString(j.spec.id)
      const { train, test } = stratifiedSplit(joined, seed, params.testFraction)
      tables.push(train, test)
      progress(`training ${j.spec.algorithm} on ${train.ids.length} rows`)
      const model = trainModel(j.spec.algorithm as 'lr', train, params.algorithm as never)
      progress('evaluating')
      const p = predictProba(model, featureMatrix(test, model.features), test.ids.length)
      const metrics = {
        ...scoreMetrics(test.y!, p),
        rows_joined: joined.ids.length,
        rows_train: train.ids.length,
        rows_test: test.ids.length,
      }
      const modelJson = new TextEncoder().encode(JSON.stringify(model))
      const modelHash = bytesToHex(sha256(canonicalBytes(model)))
      const recipients = modelRecipients(j.spec)
      const models: Record<string, Uint8Array> = {}
      const replyKeys: Record<string, string> = {}
      for (const r of recipients) {
        const replyKey = policies.get(r)?.replyKey
        if (!replyKey)
          throw new SyndicateError(
            'ERR_KEY_RELEASE',
            `model recipient ${r} uploaded no data and so has no reply key`,
          )
        replyKeys[r] = replyKey
        models[r] = sealBox(hexToBytes(replyKey), modelJson, 'model', new TextEncoder().encode(jobId))
      }
      const served: ServedModel = { model, replyKeys }
      this.served.set(jobId, served)
      const sealedModel = aeadSeal(
        this.cluster.sealKey,
        new TextEncoder().encode(JSON.stringify(served)),
        new TextEncoder().encode(`model\n${jobId}`),
      )
      const record: DestroyedRecord = {
        v: 1,
        job: jobId,
        specHash: j.specHash,
        instanceId: this.launch.instanceId,
        measurement: this.measurement,
        owners: owners.map((o, i) => ({
          party: o.name,
          uploadHash: digestOf(j.uploads.get(o.name)!.chunks as Uint8Array[]),
          rows: tables[i].ids.length,
        })),
        destroyedAt: 0,
      }
      this.wipe(jobId, held)
      record.destroyedAt = Date.now()
      const signature = Buffer.from(ed25519.sign(destroyedBytes(record), this.cluster.signSecret)).toString(
        'base64',
      )
      return { metrics, modelHash, models, sealedModel, destroyed: { record, signature } }
    } finally {
      this.wipe(jobId, held)
    }
  }

  /** Zeroes every plaintext buffer and key of a job and forgets its uploads. */
  private wipe(jobId: string, held: Held): void {
    for (const t of held.tables.splice(0)) {
      t.X.fill(0)
      t.y?.fill(0)
      t.ids.length = 0
    }
    for (const k of held.keys.splice(0)) {
      k.fill(0)
      this.liveKeys--
    }
    this.liveRows -= held.rows
    held.rows = 0
    this.jobs.delete(jobId)
    // Collect the dropped strings (customer ids) right after the reply, off the job's critical path.
    setImmediate(() => (globalThis as { gc?: () => void }).gc?.())
  }

  /** Drops a job (cancelled or failed elsewhere) with everything uploaded for it. */
  dropJob(jobId: string): void {
    this.jobs.delete(jobId)
    this.served.delete(jobId)
  }

  /** Loads a model sealed by any instance of this cluster, to serve predictions. */
  loadModel(jobId: string, sealed: Uint8Array): void {
    if (!this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_NO_CLUSTER_KEY', 'this instance holds no cluster key')
    const plain = aeadOpen(this.cluster.sealKey, sealed, new TextEncoder().encode(`model\n${jobId}`))
    if (!plain)
      throw new SyndicateError('ERR_ENCLAVE_TAMPERED', `the sealed model of job ${jobId} does not open`)
    this.served.set(jobId, JSON.parse(new TextDecoder().decode(plain)) as ServedModel)
  }

  hasModel(jobId: string): boolean {
    return this.served.has(jobId)
  }

  /**
   * Online prediction: each owner sealed its columns of the customers to the cluster key; the enclave joins
   * them in the model's feature order, predicts, and seals the probabilities to the requester, who must be a
   * model recipient. Rows are wiped before returning.
   */
  score(jobId: string, session: string, requester: string, rows: Record<string, Uint8Array>): Uint8Array {
    if (!this.cluster)
      throw new SyndicateError('ERR_ENCLAVE_NO_CLUSTER_KEY', 'this instance holds no cluster key')
    const served = this.served.get(jobId)
    if (!served)
      throw new SyndicateError('ERR_ENCLAVE_NO_MODEL', `this enclave serves no model of job ${jobId}`)
    const replyKey = served.replyKeys[requester]
    if (!replyKey)
      throw new SyndicateError('ERR_FORBIDDEN', `${requester} may not receive scores of job ${jobId}`)
    const tables: Dataset[] = []
    try {
      for (const [party, box] of Object.entries(rows)) {
        const plain = openBox(
          this.cluster.box,
          box,
          'score-rows',
          new TextEncoder().encode(`${jobId}\n${session}\n${party}`),
        )
        if (!plain) throw new SyndicateError('ERR_ENCLAVE_TAMPERED', `the rows of ${party} do not open`)
        try {
          tables.push(prefixColumns(decodeTable(plain, party), `${party}.`))
        } finally {
          plain.fill(0)
        }
      }
      // Every owner sent the customers in the asker's order; the join keeps that order and drops nobody.
      const rowCount = tables[0]?.ids.length ?? 0
      const joined = tables.slice(1).reduce((acc, t) => joinOnId(acc, t), tables[0])
      if (joined !== tables[0]) tables.push(joined)
      if (joined.ids.length !== rowCount)
        throw new SyndicateError('ERR_UNKNOWN_CUSTOMER', 'the parties sent rows of different customers')
      const X = featureMatrix(joined, served.model.features)
      if (X !== joined.X) tables.push({ ...joined, X })
      const p = predictProba(served.model, X, rowCount)
      const out = new Uint8Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength))
      return sealBox(hexToBytes(replyKey), out, 'scores', new TextEncoder().encode(`${jobId}\n${session}`))
    } finally {
      for (const t of tables) {
        t.X.fill(0)
        t.ids.length = 0
      }
    }
  }

  inventory(): Inventory {
    let uploads = 0
    let bytes = 0
    for (const j of this.jobs.values()) {
      uploads += j.uploads.size
      bytes += j.bytes
    }
    return {
      jobs: this.jobs.size,
      uploads,
      ciphertextBytes: bytes,
      dataKeys: this.liveKeys,
      plaintextRows: this.liveRows,
      models: this.served.size,
    }
  }
}
