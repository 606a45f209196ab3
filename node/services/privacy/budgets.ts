import { type PrivacyCost, PrivacyLedger } from '../../../crypto/dp/ledger.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import type { JobSpec } from '../../../protocol/jobs.ts'
import type { JobRecorder } from '../../jobs/service.ts'
import type { NodeStore } from '../../store.ts'

/**
 * Differential-privacy budgets of this node's datasets. The owner sets a budget per dataset in its policy;
 * a DP job is refused when its declared (epsilon, delta) would overspend any dataset of this node it touches,
 * and the spend the algorithm reports at the end is charged to the ledger and written to the governance log.
 */
export class PrivacyBudgets {
  private ledger = new PrivacyLedger()
  private readonly store: NodeStore
  private readonly recorder: JobRecorder

  constructor(store: NodeStore, recorder: JobRecorder) {
    this.store = store
    this.recorder = recorder
  }

  async load(): Promise<void> {
    const text = await this.store.sub<string>('privacy').get('ledger')
    if (text) this.ledger = PrivacyLedger.parse(text)
  }

  /** Budgets from the policy (dataset → total epsilon and delta). */
  async setBudgets(budgets: Record<string, PrivacyCost>): Promise<void> {
    for (const [dataset, b] of Object.entries(budgets)) this.ledger.setBudget(dataset, b)
    await this.persist()
  }

  remaining(dataset: string): PrivacyCost | undefined {
    return this.ledger.datasets().includes(dataset) ? this.ledger.remaining(dataset) : undefined
  }

  /** Why `spec` would overspend this party's dataset, or undefined; datasets without a budget are not limited. */
  check(spec: JobSpec, selfPeerId: string): string | undefined {
    const dataset = spec.parties.find((p) => p.peerId === selfPeerId)?.dataset
    const dp = declaredDp(spec)
    if (!dataset || !this.ledger.datasets().includes(dataset)) return undefined
    if (!dp) return undefined
    if (dp.epsilon === undefined)
      return `dataset ${dataset} has a privacy budget: the job must declare dp.epsilon`
    try {
      this.ledger.check(dataset, { epsilon: dp.epsilon, delta: dp.delta ?? 1e-5 })
      return undefined
    } catch (e) {
      return (e as Error).message
    }
  }

  /** Charges what a finished job spent and logs it. */
  async record(jobId: string, dataset: string, spend: PrivacyCost): Promise<void> {
    if (!this.ledger.datasets().includes(dataset)) {
      await this.recorder.append(
        'privacy.spend',
        { datasetId: dataset, epsilon: spend.epsilon, delta: spend.delta },
        { jobId },
      )
      return
    }
    this.ledger.record(dataset, {
      jobId,
      epsilon: spend.epsilon,
      delta: spend.delta,
      at: new Date().toISOString(),
    })
    await this.persist()
    await this.recorder.append(
      'privacy.spend',
      {
        datasetId: dataset,
        epsilon: spend.epsilon,
        delta: spend.delta,
        remainingEpsilon: this.ledger.remaining(dataset).epsilon,
      },
      { jobId },
    )
  }

  private async persist(): Promise<void> {
    await this.store.sub<string>('privacy').put('ledger', this.ledger.serialize())
  }
}

/** The DP settings a training job declares in its algorithm parameters, if any. */
function declaredDp(spec: JobSpec): { epsilon?: number; delta?: number } | undefined {
  const algo = (spec.params as { algorithm?: { dp?: unknown } }).algorithm
  const dp = algo?.dp
  if (dp === undefined) return undefined
  if (typeof dp !== 'object' || dp === null)
    throw new SyndicateError('ERR_INVALID_REQUEST', 'params.algorithm.dp must be an object')
  const { epsilon, delta } = dp as { epsilon?: unknown; delta?: unknown }
  return {
    epsilon: typeof epsilon === 'number' ? epsilon : undefined,
    delta: typeof delta === 'number' ? delta : undefined,
  }
}
