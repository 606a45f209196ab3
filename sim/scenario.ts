import { join } from 'node:path'
import type { RunningNode } from '../node/daemon.ts'
import type { JobView } from '../node/jobs/service.ts'
import type { JobDraft, JobState } from '../protocol/jobs.ts'
import type { SimConsortium } from './consortium.ts'
import { bundledDataDir, HORIZONTAL_PLAN, VERTICAL_PLAN } from './data.ts'

/**
 * Scenarios on a simulated consortium, driven as operators would: through each node's HTTP API (register
 * datasets, set policies, propose jobs) and read back from the jobs' records.
 */
/** One HTTP API request with an operator's (or auditor's) token: the status and the JSON body. */
export async function request(
  node: RunningNode,
  token: string,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await fetch(`${node.httpUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } },
  }
}

/** `request` that returns the body and throws, naming the node and the error, on a failure status. */
export async function call<T = unknown>(
  node: RunningNode,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const r = await request(node, token, method, path, body)
  if (r.status >= 400)
    throw new Error(
      `${method} ${path} on ${node.config.name}: ${r.body.error?.code} ${r.body.error?.message}`,
    )
  return r.body as T
}

/** Every node accepts jobs on any registered dataset automatically (a simulation, not a production policy). */
export async function openPolicies(sim: SimConsortium): Promise<void> {
  await Promise.all(
    sim.nodes.map((n) =>
      call(n.node, n.token, 'PUT', '/v1/policy', { approval: 'auto', datasets: { '*': {} } }),
    ),
  )
}

function byName(sim: SimConsortium, name: string) {
  const n = sim.nodes.find((x) => x.name === name)
  if (!n) throw new Error(`the simulation has no node ${name}`)
  return n
}

/** Registers the vertical split: bank-a the guest file (with labels), the partners the host file. */
export async function registerVerticalData(sim: SimConsortium, dataDir = bundledDataDir()): Promise<void> {
  const holder = byName(sim, VERTICAL_PLAN.labelHolder.name)
  await call(holder.node, holder.token, 'POST', '/v1/datasets', {
    name: 'credit-vertical',
    file: join(dataDir, VERTICAL_PLAN.labelHolder.file),
    id: 'id',
    label: VERTICAL_PLAN.labelHolder.label,
  })
  for (const p of VERTICAL_PLAN.partners) {
    const n = byName(sim, p.name)
    await call(n.node, n.token, 'POST', '/v1/datasets', {
      name: 'credit-vertical',
      file: join(dataDir, p.file),
      id: 'id',
    })
  }
}

/** Registers the horizontal split on every party, and the held-out test customers on the aggregator (bank-a). */
export async function registerHorizontalData(sim: SimConsortium, dataDir = bundledDataDir()): Promise<void> {
  for (const p of HORIZONTAL_PLAN.parties) {
    const n = byName(sim, p.name)
    await call(n.node, n.token, 'POST', '/v1/datasets', {
      name: 'credit-horizontal',
      file: join(dataDir, p.file),
      id: 'id',
      label: 'y',
    })
  }
  const agg = byName(sim, HORIZONTAL_PLAN.parties[0].name)
  await call(agg.node, agg.token, 'POST', '/v1/datasets', {
    name: 'credit-holdout',
    file: join(dataDir, HORIZONTAL_PLAN.evaluation),
    id: 'id',
    label: 'y',
  })
}

/**
 * A job on the vertical split among bank-a (label holder) and the partners. Train params are the caller's
 * (with compareAlone on by default); `{ alignment: psiJobId }` reuses a succeeded psi job's alignment instead
 * of running PSI inside the training job.
 */
export function verticalJob(
  kind: 'psi' | 'train',
  algorithm: string,
  mode: 'mpc' | 'he',
  params: Record<string, unknown> = {},
): JobDraft {
  const names = [VERTICAL_PLAN.labelHolder.name, ...VERTICAL_PLAN.partners.map((p) => p.name)]
  return {
    kind,
    mode,
    algorithm,
    parties: [
      { name: VERTICAL_PLAN.labelHolder.name, roles: ['label-holder'], dataset: 'credit-vertical' },
      ...VERTICAL_PLAN.partners.map((p) => ({
        name: p.name,
        roles: ['feature-holder' as const],
        dataset: 'credit-vertical',
        columns: [...p.columns],
      })),
    ],
    params: kind === 'train' ? { compareAlone: true, ...params } : {},
    outputs: [{ what: kind === 'psi' ? 'intersection-size' : 'metrics', to: names }],
    timeoutSeconds: 3600,
  }
}

/**
 * An enclave (`tee`) training job on the vertical split: the three institutions upload their columns to the
 * enclave run by `enclaveHost`; the label holder alone receives the model.
 */
export function teeJob(
  algorithm: 'lr' | 'gbdt' | 'mlp',
  enclaveHost: string,
  params: NonNullable<JobDraft['params']> = {},
): JobDraft {
  const holder = VERTICAL_PLAN.labelHolder.name
  const owners = [holder, ...VERTICAL_PLAN.partners.map((p) => p.name)]
  return {
    kind: 'train',
    mode: 'tee',
    algorithm,
    parties: [
      { name: holder, roles: ['label-holder'], dataset: 'credit-vertical' },
      ...VERTICAL_PLAN.partners.map((p) => ({
        name: p.name,
        roles: ['feature-holder' as const],
        dataset: 'credit-vertical',
        columns: [...p.columns],
      })),
      { name: enclaveHost, roles: ['enclave-host'] },
    ],
    params,
    outputs: [
      { what: 'model', to: [holder] },
      { what: 'metrics', to: owners },
    ],
    timeoutSeconds: 3600,
  }
}

export function horizontalJob(algorithm: string, params: Record<string, unknown> = {}): JobDraft {
  const names = HORIZONTAL_PLAN.parties.map((p) => p.name)
  return {
    kind: 'train',
    mode: 'hfl',
    algorithm,
    parties: names.map((name, i) => ({
      name,
      roles: i === 0 ? ['aggregator' as const, 'recipient' as const] : ['recipient' as const],
      dataset: 'credit-horizontal',
    })),
    params: { evaluation: 'credit-holdout', ...params },
    outputs: [
      { what: 'model', to: names },
      { what: 'metrics', to: names },
    ],
    timeoutSeconds: 3600,
  }
}

export interface JobReport {
  id: string
  state: JobState
  reason?: string
  metrics: Record<string, number>
  /** What the reporting party's executor summarised (e.g. `aloneModel`, the label-holder-alone family). */
  summary: Record<string, unknown>
  /** Per party: seconds it ran and bytes it sent. */
  parties: Array<{ name: string; seconds: number; bytesSent: number; bytesReceived: number }>
}

/**
 * Proposes `draft` from `proposer` and waits until every party has ended it; `onProgress` sees the proposer's
 * phase and round as they change.
 */
export async function runJob(
  sim: SimConsortium,
  proposer: string,
  draft: JobDraft,
  onProgress?: (view: JobView) => void,
  timeoutMs = 30 * 60_000,
): Promise<JobReport> {
  const p = byName(sim, proposer)
  const created = await call<JobView>(p.node, p.token, 'POST', '/v1/jobs', draft)
  const id = created.spec.id
  const parties = created.spec.parties.map((x) => byName(sim, x.name))
  const deadline = Date.now() + timeoutMs
  let lastKey = ''
  for (;;) {
    const views = await Promise.all(parties.map((x) => x.node.jobs.get(id)))
    const lead = views[0]
    if (lead && onProgress) {
      const key = `${lead.state}/${lead.progress?.phase}/${lead.progress?.done}`
      if (key !== lastKey) {
        lastKey = key
        onProgress(lead)
      }
    }
    if (
      views.every((v) => v && ['succeeded', 'failed', 'cancelled', 'rejected', 'expired'].includes(v.state))
    ) {
      const holder = views.find((v) => v?.result) ?? views[0]!
      return {
        id,
        state: views[0]!.state,
        reason: views.find((v) => v?.reason)?.reason,
        metrics: holder.result?.metrics ?? {},
        summary: holder.result?.summary ?? {},
        parties: views.map((v, i) => ({
          name: parties[i].name,
          seconds: Number(v?.result?.summary?.seconds ?? 0),
          bytesSent: Number(v?.result?.summary?.bytesSent ?? 0),
          bytesReceived: Number(v?.result?.summary?.bytesReceived ?? 0),
        })),
      }
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not end within ${timeoutMs / 1000} s`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
