/**
 * Real-time and batch scoring of live models: one onnxruntime InferenceSession per live model (one intra-op
 * thread: requests are many and small, the node has other work), reloaded when the live version changes.
 */
import * as ort from 'onnxruntime-node'
import { SyndicateError } from '../../../crypto/errors.ts'
import { createExplainer, type Explainer, type ReasonCode } from '../../../learning/explain/reasons.ts'
import type { Model } from '../../../learning/models/types.ts'
import type { ModelRegistry, ModelVersion } from './registry.ts'
import { createSession } from './signature.ts'
import { type RowValidator, rowValidator } from './validate.ts'

export interface ScoreResult {
  probability: number
  /** 1 when probability >= the model's cutoff. */
  decision: 0 | 1
  /** Top factors behind the score (learning/explain): LR exact, GBDT TreeSHAP, MLP integrated gradients. */
  reasons: ReasonCode[]
}

/** A loaded live version: session, schema validator and reusable single-row input buffers. */
export interface Deployment {
  id: string
  version: ModelVersion
  validator: RowValidator
  /** Reason codes for this version, when it has model data (and, for GBDT, node covers). */
  explain?: Explainer
  session: ort.InferenceSession
  /** Requests holding this deployment (see `acquire`). */
  inflight: number
  retired: boolean
  /** Free single-row input buffers; a run holds one until it resolves. */
  buffers: Float32Array[]
}

/**
 * The reason-code explainer of a registered model, if one can be built: GBDT needs node covers (TreeSHAP);
 * LR and MLP are measured from a reference applicant, the version's `referenceRow` or else the training
 * mean of the standardisation (which preprocesses to the zero vector).
 */
export function explainerFor(model: Model | undefined, referenceRow?: number[]): Explainer | undefined {
  if (!model) return undefined
  if (model.kind === 'gbdt') return model.trees.every((t) => t.cover) ? createExplainer(model) : undefined
  const ref = referenceRow ?? model.preprocessing.standardize?.mean
  return ref ? createExplainer(model, { X: Float64Array.from(ref), rows: 1 }) : undefined
}

export class Scorer {
  readonly #registry: ModelRegistry
  readonly #deployments = new Map<string, Promise<Deployment>>()

  constructor(registry: ModelRegistry) {
    this.#registry = registry
  }

  /**
   * The loaded live version of `id`, held for one request until `release`: a session replaced meanwhile
   * (another version went live) is released only after its last holder lets go. Loads on first use and
   * after the live version changes.
   */
  async acquire(id: string): Promise<Deployment> {
    const live = await this.#registry.live(id)
    if (!live) {
      throw new SyndicateError(
        'ERR_MODEL_NOT_LIVE',
        `Model "${id}" has no live version; make one live with POST /v1/models/${id}/state.`,
        { id },
      )
    }
    const cached = this.#deployments.get(id)
    if (cached) {
      const dep = await cached.catch(() => undefined)
      if (dep && !dep.retired && dep.version.version === live.version) {
        dep.inflight++
        return dep
      }
      if (this.#deployments.get(id) !== cached) return this.acquire(id)
      if (dep) this.#retire(dep)
    }
    const loading = this.#load(id, live)
    this.#deployments.set(id, loading)
    loading.catch(() => {
      if (this.#deployments.get(id) === loading) this.#deployments.delete(id)
    })
    const dep = await loading
    dep.inflight++
    return dep
  }

  release(dep: Deployment): void {
    dep.inflight--
    if (dep.retired && dep.inflight === 0) void dep.session.release()
  }

  async #load(id: string, version: ModelVersion): Promise<Deployment> {
    const session = await createSession(await this.#registry.onnx(id, version.version))
    const allowMissing =
      version.model !== undefined &&
      (version.model.kind === 'gbdt' || version.model.preprocessing.impute !== undefined)
    return {
      id,
      version,
      session,
      validator: rowValidator(version.features, allowMissing),
      explain: explainerFor(version.model, version.referenceRow),
      inflight: 0,
      retired: false,
      buffers: [],
    }
  }

  /** Releases a replaced session once its holders are done. */
  #retire(dep: Deployment): void {
    dep.retired = true
    if (dep.inflight === 0) void dep.session.release()
  }

  /** P(y = 1) for `n` rows in `input` (row-major float32, the model's feature order); `dep` acquired. */
  async run(dep: Deployment, input: Float32Array, n: number): Promise<Float32Array> {
    const sig = dep.version.signature
    const d = dep.version.features.length
    const out = await dep.session.run(
      { [sig.input]: new ort.Tensor('float32', input.subarray(0, n * d), [n, d]) },
      [sig.output],
    )
    const data = out[sig.output].data as Float32Array
    if (sig.width === 1) return data
    const p = new Float32Array(n)
    for (let i = 0; i < n; i++) p[i] = data[i * sig.width + sig.column]
    return p
  }

  /** Probability, decision at the cutoff and the top `reasons` reason codes per row (0: none). */
  results(
    dep: Deployment,
    input: Float32Array,
    probs: Float32Array,
    n: number,
    reasons: number,
  ): ScoreResult[] {
    const d = dep.version.features.length
    const cutoff = dep.version.cutoff
    const explain = reasons > 0 ? dep.explain : undefined
    const out: ScoreResult[] = new Array(n)
    for (let i = 0; i < n; i++) {
      const p = probs[i]
      out[i] = {
        probability: p,
        decision: p >= cutoff ? 1 : 0,
        reasons: explain ? explain(input.subarray(i * d, i * d + d), { top: reasons }).reasons : [],
      }
    }
    return out
  }

  /** A single-row buffer of the deployment's width; give it back with `releaseBuffer` after the run. */
  takeBuffer(dep: Deployment): Float32Array {
    return dep.buffers.pop() ?? new Float32Array(dep.version.features.length)
  }

  releaseBuffer(dep: Deployment, buf: Float32Array): void {
    if (dep.buffers.length < 64) dep.buffers.push(buf)
  }

  async close(): Promise<void> {
    const deps = await Promise.allSettled(this.#deployments.values())
    this.#deployments.clear()
    for (const d of deps) if (d.status === 'fulfilled') await d.value.session.release()
  }
}
