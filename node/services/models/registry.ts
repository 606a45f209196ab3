/**
 * The model registry: versions of each model with metadata, lineage and a deployment state, and the ONNX
 * bytes, in the node's LevelDB sublevel. Records are kept in memory after the first load (the scorer asks
 * for the live version on every request); every change is written through in one atomic batch.
 *
 * Keys: `model!<id>` → ModelRecord (JSON), `onnx!<id>!<version>` → the ONNX bytes in base64.
 */
import { createHash } from 'node:crypto'
import { SyndicateError } from '../../../crypto/errors.ts'
import type { Model, ModelKind } from '../../../learning/models/types.ts'
import { checkModel } from '../../../learning/onnx/check.ts'
import { exportOnnx, META_FEATURES } from '../../../learning/onnx/export.ts'
import { readMetadata } from '../../../learning/onnx/graph.ts'
import type { Sublevel } from '../../store.ts'
import { inspectOnnx, type OnnxSignature } from './signature.ts'

export type ModelState = 'staged' | 'live' | 'retired'
export const MODEL_STATES: readonly ModelState[] = ['staged', 'live', 'retired']

/**
 * Legal moves. Making a version live retires the model's previous live version in the same write, so a model
 * has at most one live version; rollback = re-stage a retired version, then make it live.
 */
const TRANSITIONS: Record<ModelState, readonly ModelState[]> = {
  staged: ['live', 'retired'],
  live: ['retired'],
  retired: ['staged'],
}

export interface Lineage {
  trainingJobId?: string
  /** Schema hashes of the datasets the model was trained on (as registered in the governance log). */
  datasetSchemaHashes?: string[]
  metrics?: Record<string, number>
}

export interface ModelVersion {
  version: number
  state: ModelState
  /** `imported` for ONNX trained elsewhere (no model data: no reason codes). */
  kind: ModelKind | 'imported'
  features: string[]
  /** Decision threshold on P(y = 1): decision 1 when probability >= cutoff. */
  cutoff: number
  sha256: string
  bytes: number
  signature: OnnxSignature
  lineage: Lineage
  description?: string
  createdAt: string
  history: { state: ModelState; at: string }[]
  /** Fitted model data for models exported by Syndicate (reason codes need it). */
  model?: Model
  /**
   * Raw feature values of the reference applicant that LR/MLP reason codes are measured from (an aggregate
   * such as the training mean, never a customer's row). Default: the standardisation mean.
   */
  referenceRow?: number[]
}

export interface ModelRecord {
  id: string
  createdAt: string
  versions: ModelVersion[]
}

export interface RegisterInput {
  id: string
  /** Either fitted model data (exported here) or ONNX bytes trained elsewhere with their feature schema. */
  model?: Model
  onnx?: Uint8Array
  features?: string[]
  cutoff?: number
  lineage?: Lineage
  description?: string
  referenceRow?: number[]
}

export const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const modelKey = (id: string) => `model!${id}`
const onnxKey = (id: string, v: number) => `onnx!${id}!${v}`

function notFound(id: string, version?: number): never {
  if (version === undefined) {
    throw new SyndicateError('ERR_MODEL_NOT_FOUND', `No model "${id}"; list models with GET /v1/models.`, {
      id,
    })
  }
  throw new SyndicateError('ERR_MODEL_VERSION_NOT_FOUND', `Model "${id}" has no version ${version}.`, {
    id,
    version,
  })
}

function checkFeatures(features: string[]): void {
  const dup = features.filter((f, i) => features.indexOf(f) !== i)
  if (features.length === 0 || dup.length > 0 || features.some((f) => f.length === 0)) {
    throw new SyndicateError(
      'ERR_MODEL_SCHEMA_INVALID',
      `Feature names must be non-empty and unique${dup.length ? ` (duplicates: ${dup.join(', ')})` : ''}.`,
    )
  }
}

export class ModelRegistry {
  readonly #store: Sublevel
  #records: Map<string, ModelRecord> | undefined
  #loading: Promise<Map<string, ModelRecord>> | undefined
  /** Writes run one at a time: each is a read-modify-write of a record. */
  #queue: Promise<unknown> = Promise.resolve()

  constructor(store: Sublevel) {
    this.#store = store
  }

  async #load(): Promise<Map<string, ModelRecord>> {
    if (this.#records) return this.#records
    this.#loading ??= (async () => {
      const map = new Map<string, ModelRecord>()
      for await (const value of this.#store.values({ gte: 'model!', lt: 'model!\xff' })) {
        const r = value as ModelRecord
        map.set(r.id, r)
      }
      this.#records = map
      return map
    })()
    return this.#loading
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }

  async list(): Promise<ModelRecord[]> {
    return [...(await this.#load()).values()].sort((a, b) => a.id.localeCompare(b.id))
  }

  async get(id: string): Promise<ModelRecord> {
    return (await this.#load()).get(id) ?? notFound(id)
  }

  async version(id: string, version: number): Promise<ModelVersion> {
    return (await this.get(id)).versions.find((v) => v.version === version) ?? notFound(id, version)
  }

  /** The live version of a model, or undefined when none is live. */
  async live(id: string): Promise<ModelVersion | undefined> {
    return (await this.get(id)).versions.find((v) => v.state === 'live')
  }

  async onnx(id: string, version: number): Promise<Uint8Array> {
    await this.version(id, version)
    const b64 = (await this.#store.get(onnxKey(id, version))) as string | undefined
    if (b64 === undefined) {
      throw new SyndicateError(
        'ERR_MODEL_STORE_CORRUPT',
        `The ONNX bytes of ${id} v${version} are missing from the store; re-import the model.`,
      )
    }
    return Buffer.from(b64, 'base64')
  }

  /**
   * A new staged version of model `id` (created if new): from fitted model data (exported to ONNX here) or
   * from ONNX bytes trained elsewhere, validated against the declared features.
   */
  async register(input: RegisterInput): Promise<ModelVersion> {
    if (!MODEL_ID.test(input.id)) {
      throw new SyndicateError(
        'ERR_MODEL_ID_INVALID',
        `Model id "${input.id}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.`,
      )
    }
    const cutoff = input.cutoff ?? 0.5
    if (!(cutoff >= 0 && cutoff <= 1))
      throw new SyndicateError('ERR_MODEL_CUTOFF', `cutoff must be in [0, 1], got ${cutoff}.`)
    let onnx: Uint8Array
    let features: string[]
    if (input.model) {
      checkModel(input.model)
      features = input.model.features
      if (input.features && input.features.join('\u0000') !== features.join('\u0000')) {
        throw new SyndicateError(
          'ERR_MODEL_SCHEMA_MISMATCH',
          "The declared features differ from the model data's features; omit `features` or fix their order.",
        )
      }
      // Scores and reason codes must come from the same model: the ONNX is always exported from the data.
      if (input.onnx) {
        throw new SyndicateError(
          'ERR_MODEL_SCHEMA_INVALID',
          'Give either fitted model data or ONNX bytes, not both.',
        )
      }
      onnx = exportOnnx(input.model)
    } else {
      if (!input.onnx || !input.features) {
        throw new SyndicateError(
          'ERR_MODEL_SCHEMA_INVALID',
          'An imported model needs both its ONNX bytes and its feature names, in input column order.',
        )
      }
      onnx = input.onnx
      features = input.features
      // A Syndicate-exported file names its columns: the declared order must match it.
      const named = readMetadata(onnx)[META_FEATURES]
      if (named !== undefined && named !== JSON.stringify(features)) {
        throw new SyndicateError(
          'ERR_MODEL_SCHEMA_MISMATCH',
          `The ONNX file was exported for features ${named}; declare exactly these, in this order.`,
        )
      }
    }
    checkFeatures(features)
    const ref = input.referenceRow
    if (ref && (ref.length !== features.length || !ref.every(Number.isFinite))) {
      throw new SyndicateError(
        'ERR_MODEL_SCHEMA_INVALID',
        `referenceRow must hold ${features.length} finite values in feature order.`,
      )
    }
    const signature = await inspectOnnx(onnx, features.length)
    return this.#serial(async () => {
      const records = await this.#load()
      const now = new Date().toISOString()
      const prev = records.get(input.id)
      const version = (prev?.versions.reduce((m, v) => Math.max(m, v.version), 0) ?? 0) + 1
      const v: ModelVersion = {
        version,
        state: 'staged',
        kind: input.model?.kind ?? 'imported',
        features,
        cutoff,
        sha256: createHash('sha256').update(onnx).digest('hex'),
        bytes: onnx.length,
        signature,
        lineage: input.lineage ?? {},
        description: input.description,
        createdAt: now,
        history: [{ state: 'staged', at: now }],
        model: input.model,
        referenceRow: ref,
      }
      const record: ModelRecord = prev
        ? { ...prev, versions: [...prev.versions, v] }
        : { id: input.id, createdAt: now, versions: [v] }
      await this.#store.batch([
        { type: 'put', key: onnxKey(input.id, version), value: Buffer.from(onnx).toString('base64') },
        { type: 'put', key: modelKey(input.id), value: record },
      ])
      records.set(input.id, record)
      return v
    })
  }

  /** Moves a version to `state`; going live retires the previous live version in the same write. */
  async setState(id: string, version: number, state: ModelState): Promise<ModelVersion> {
    return this.#serial(async () => {
      const record = await this.get(id)
      const target = record.versions.find((v) => v.version === version) ?? notFound(id, version)
      if (!TRANSITIONS[target.state].includes(state)) {
        throw new SyndicateError(
          'ERR_MODEL_STATE_TRANSITION',
          `Version ${version} of "${id}" is ${target.state}; it can move to ${TRANSITIONS[target.state].join(' or ')}, not ${state}.`,
          { from: target.state, to: state },
        )
      }
      const at = new Date().toISOString()
      const move = (v: ModelVersion, s: ModelState): ModelVersion => ({
        ...v,
        state: s,
        history: [...v.history, { state: s, at }],
      })
      const versions = record.versions.map((v) => {
        if (v.version === version) return move(v, state)
        return state === 'live' && v.state === 'live' ? move(v, 'retired') : v
      })
      const next = { ...record, versions }
      await this.#store.put(modelKey(id), next)
      ;(await this.#load()).set(id, next)
      return versions.find((v) => v.version === version)!
    })
  }
}
