import { canonicalJson } from '../canonical.ts'
import { SyndicateError } from '../errors.ts'
import { dpParameterError, requireNonNegative } from './validate.ts'

/**
 * The per-dataset privacy budget ledger: each dataset has a total (epsilon, delta) budget set by its owner, and
 * every DP job that touches it spends part of it. Spends compose by basic composition (epsilons and deltas add),
 * which is valid for any mechanisms and any order; a job accounts its own steps tightly with RDP (rdp.ts) and
 * reports one (epsilon, delta) here. The ledger is pure state: the job protocol calls `check` before it accepts
 * a job, the caller logs the spend (governance log) and then `record`s it, and persists `serialize()`.
 */

export interface PrivacyCost {
  epsilon: number
  delta: number
}

export interface LedgerSpend extends PrivacyCost {
  jobId: string
  /** ISO-8601 time of the spend, supplied by the caller (the ledger has no clock). */
  at: string
}

export interface DatasetAccount {
  budget: PrivacyCost
  spends: LedgerSpend[]
}

export interface LedgerState {
  version: 1
  datasets: Record<string, DatasetAccount>
}

/** Relative slack for float sums, so a budget split into exact parts can be spent to the end. */
const SLACK = 1e-9

export class PrivacyLedger {
  readonly #datasets = new Map<string, DatasetAccount>()

  constructor(state?: LedgerState) {
    if (state) {
      for (const [id, acc] of Object.entries(state.datasets)) {
        this.#datasets.set(id, { budget: { ...acc.budget }, spends: acc.spends.map((s) => ({ ...s })) })
      }
    }
  }

  /** Restores a ledger from `serialize()` output, refusing anything malformed (ERR_DP_LEDGER_CORRUPT). */
  static parse(text: string): PrivacyLedger {
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      throw corrupt('not JSON')
    }
    return new PrivacyLedger(validateState(raw))
  }

  /** Sets (or raises/lowers) a dataset's total budget. Lowering below what is spent blocks further jobs. */
  setBudget(datasetId: string, budget: PrivacyCost): void {
    checkCost(budget)
    const acc = this.#datasets.get(datasetId)
    if (acc) acc.budget = { ...budget }
    else this.#datasets.set(datasetId, { budget: { ...budget }, spends: [] })
  }

  datasets(): string[] {
    return [...this.#datasets.keys()].sort()
  }

  budget(datasetId: string): PrivacyCost {
    return { ...this.#account(datasetId).budget }
  }

  spends(datasetId: string): LedgerSpend[] {
    return this.#account(datasetId).spends.map((s) => ({ ...s }))
  }

  spent(datasetId: string): PrivacyCost {
    return this.#account(datasetId).spends.reduce(
      (t, s) => ({ epsilon: t.epsilon + s.epsilon, delta: t.delta + s.delta }),
      {
        epsilon: 0,
        delta: 0,
      },
    )
  }

  remaining(datasetId: string): PrivacyCost {
    const b = this.budget(datasetId)
    const s = this.spent(datasetId)
    return { epsilon: Math.max(0, b.epsilon - s.epsilon), delta: Math.max(0, b.delta - s.delta) }
  }

  /**
   * Throws ERR_DP_BUDGET_EXCEEDED if spending `cost` on every dataset in `datasetIds` would overspend any of
   * them (ERR_DP_NO_BUDGET for a dataset without a budget); returns normally if the job fits.
   */
  check(datasetIds: string | readonly string[], cost: PrivacyCost): void {
    checkCost(cost)
    for (const id of typeof datasetIds === 'string' ? [datasetIds] : datasetIds) {
      const b = this.budget(id)
      const s = this.spent(id)
      const overEps = s.epsilon + cost.epsilon > b.epsilon * (1 + SLACK)
      const overDelta = s.delta + cost.delta > b.delta * (1 + SLACK)
      if (overEps || overDelta) {
        const r = this.remaining(id)
        throw new SyndicateError(
          'ERR_DP_BUDGET_EXCEEDED',
          `dataset ${id} has (epsilon ${fmt(r.epsilon)}, delta ${fmt(r.delta)}) left of its privacy budget; ` +
            `the job asks for (epsilon ${fmt(cost.epsilon)}, delta ${fmt(cost.delta)}). Use more noise, fewer ` +
            'steps or a smaller sampling rate, or ask the data owner to raise the budget',
          { datasetId: id, requested: { ...cost }, remaining: r, budget: b },
        )
      }
    }
  }

  /** Records a spend after `check`ing it; a job id may spend on a dataset once (ERR_DP_DUPLICATE_SPEND). */
  record(datasetId: string, spend: LedgerSpend): void {
    if (typeof spend.jobId !== 'string' || spend.jobId === '')
      throw corruptInput('jobId must be a non-empty string')
    if (typeof spend.at !== 'string' || Number.isNaN(Date.parse(spend.at)))
      throw corruptInput('at must be ISO time')
    const acc = this.#account(datasetId)
    if (acc.spends.some((s) => s.jobId === spend.jobId)) {
      throw new SyndicateError(
        'ERR_DP_DUPLICATE_SPEND',
        `job ${spend.jobId} already spent privacy budget on dataset ${datasetId}`,
        { datasetId, jobId: spend.jobId },
      )
    }
    this.check(datasetId, spend)
    acc.spends.push({ jobId: spend.jobId, epsilon: spend.epsilon, delta: spend.delta, at: spend.at })
  }

  state(): LedgerState {
    const datasets: Record<string, DatasetAccount> = {}
    for (const id of this.datasets()) {
      const acc = this.#datasets.get(id)!
      datasets[id] = { budget: { ...acc.budget }, spends: acc.spends.map((s) => ({ ...s })) }
    }
    return { version: 1, datasets }
  }

  /** Canonical JSON (sorted keys), so the same ledger always hashes the same. */
  serialize(): string {
    return canonicalJson(this.state())
  }

  #account(datasetId: string): DatasetAccount {
    const acc = this.#datasets.get(datasetId)
    if (!acc) {
      throw new SyndicateError(
        'ERR_DP_NO_BUDGET',
        `dataset ${datasetId} has no privacy budget; its owner must set one before DP jobs can use it`,
        { datasetId },
      )
    }
    return acc
  }
}

function checkCost(c: PrivacyCost): void {
  requireNonNegative('epsilon', c?.epsilon)
  requireNonNegative('delta', c?.delta)
  if (c.delta >= 1) throw dpParameterError('delta', c.delta, 'in [0, 1)')
}

function fmt(x: number): string {
  return Number(x.toPrecision(4)).toString()
}

function corrupt(why: string): SyndicateError {
  return new SyndicateError('ERR_DP_LEDGER_CORRUPT', `privacy ledger state is invalid: ${why}`, { why })
}

function corruptInput(why: string): SyndicateError {
  return new SyndicateError('ERR_DP_BAD_PARAMETER', why, {})
}

function validateState(raw: unknown): LedgerState {
  const obj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
  const cost = (v: unknown): boolean =>
    obj(v) &&
    typeof v.epsilon === 'number' &&
    typeof v.delta === 'number' &&
    Number.isFinite(v.epsilon) &&
    v.epsilon >= 0 &&
    v.delta >= 0 &&
    v.delta < 1
  if (!obj(raw) || raw.version !== 1 || !obj(raw.datasets)) throw corrupt('expected { version: 1, datasets }')
  for (const [id, acc] of Object.entries(raw.datasets)) {
    if (!obj(acc) || !cost(acc.budget) || !Array.isArray(acc.spends)) throw corrupt(`dataset ${id}`)
    const seen = new Set<string>()
    for (const s of acc.spends) {
      if (
        !obj(s) ||
        !cost(s) ||
        typeof s.jobId !== 'string' ||
        typeof s.at !== 'string' ||
        seen.has(s.jobId)
      ) {
        throw corrupt(`a spend of dataset ${id}`)
      }
      seen.add(s.jobId)
    }
  }
  return raw as unknown as LedgerState
}
