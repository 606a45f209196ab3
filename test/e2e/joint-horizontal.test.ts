import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadCsv } from '../../learning/data/csv.ts'
import { concatRows } from '../../learning/data/dataset.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../learning/models/gbdt.ts'
import { trainLogisticRegression } from '../../learning/models/lr.ts'
import { trainMlp } from '../../learning/models/mlp.ts'
import { predictProba } from '../../learning/models/predict.ts'
import { type SimConsortium, startConsortium } from '../../sim/consortium.ts'
import { HORIZONTAL_PLAN } from '../../sim/data.ts'
import { call, horizontalJob, openPolicies, registerHorizontalData, runJob } from '../../sim/scenario.ts'
import { DATA_DIR, dataFile } from '../helpers/data.ts'
import { waitForJob } from '../helpers/jobs.ts'

/** Horizontal joint training between three real nodes on loopback, on the bundled homo files. */
let sim: SimConsortium
const scratch = mkdtempSync(join(tmpdir(), 'syndicate-hfl-'))
const load = (f: string) => loadCsv(dataFile(f), { id: 'id', label: 'y' })
const pooled = concatRows(HORIZONTAL_PLAN.parties.map((p) => load(p.file)))
const holdout = load(HORIZONTAL_PLAN.evaluation)
const plainAuc = (m: Parameters<typeof predictProba>[0]) =>
  auc(holdout.y!, predictProba(m, holdout.X, holdout.ids.length))

beforeAll(async () => {
  sim = await startConsortium({ names: HORIZONTAL_PLAN.parties.map((p) => p.name) })
  await openPolicies(sim)
  await registerHorizontalData(sim, DATA_DIR)
})
afterAll(async () => {
  await sim?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

describe('horizontal training between three nodes', () => {
  it('FedAvg-LR with secure aggregation: AUC >= 0.725 and within 0.005 of pooled plaintext SGD', async () => {
    const params = { rounds: 30, batchSize: 256, learningRate: 0.5 }
    const r = await runJob(sim, 'bank-a', horizontalJob('fedavg-lr', { seed: 7, algorithm: params }))
    expect(r.state, r.reason).toBe('succeeded')
    const plain = trainLogisticRegression(pooled.X, pooled.y!, pooled.featureNames, {
      solver: 'sgd',
      epochs: 30,
      batchSize: 256,
      learningRate: 0.5,
      seed: 7,
    })
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.725)
    expect(Math.abs(r.metrics.auc - plainAuc(plain))).toBeLessThanOrEqual(0.005)
    expect(r.parties.every((p) => p.bytesSent > 0)).toBe(true)
    // Every party registered the same global model, with the job as its lineage, ready for real-time scoring.
    for (const n of sim.nodes) {
      const m = await call<{ versions: Array<{ lineage?: { trainingJobId?: string } }> }>(
        n.node,
        n.token,
        'GET',
        '/v1/models/fedavg-lr',
      )
      expect(m.versions.some((v) => v.lineage?.trainingJobId === r.id)).toBe(true)
    }
  })

  it('FedAvg-MLP with secure aggregation: AUC >= 0.765 and within 0.005 of the pooled MLP', async () => {
    const r = await runJob(sim, 'bank-a', horizontalJob('fedavg-mlp', { seed: 7 }))
    expect(r.state, r.reason).toBe('succeeded')
    const plain = trainMlp(pooled.X, pooled.y!, pooled.featureNames, { seed: 7 })
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.765)
    expect(Math.abs(r.metrics.auc - plainAuc(plain))).toBeLessThanOrEqual(0.005)
  })

  it('federated GBDT with secure-aggregated histograms: AUC >= 0.780 and within 0.005 of the pooled GBDT', async () => {
    const params = { trees: 30, maxDepth: 3, learningRate: 0.3, maxBins: 32 }
    const r = await runJob(sim, 'bank-a', horizontalJob('federated-gbdt', { seed: 7, algorithm: params }))
    expect(r.state, r.reason).toBe('succeeded')
    const plain = trainGbdt(pooled.X, pooled.y!, pooled.featureNames, params)
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.78)
    expect(Math.abs(r.metrics.auc - plainAuc(plain))).toBeLessThanOrEqual(0.005)
  })

  it('parties whose schemas disagree: the job fails with the reason and the nodes keep working', async () => {
    // lender-b registers a file that lacks one feature column.
    const rows = readFileSync(dataFile(HORIZONTAL_PLAN.parties[1].file), 'utf8').trim().split('\n')
    const cut = rows.map((l) => l.split(',').slice(0, -1).join(','))
    writeFileSync(join(scratch, 'short.csv'), `${cut.join('\n')}\n`)
    const b = sim.nodes[1]
    await call(b.node, b.token, 'POST', '/v1/datasets', {
      name: 'short',
      file: join(scratch, 'short.csv'),
      id: 'id',
      label: 'y',
    })
    const draft = horizontalJob('fedavg-lr', { seed: 7 })
    draft.parties = draft.parties.map((p) => (p.name === 'lender-b' ? { ...p, dataset: 'short' } : p))
    const r = await runJob(sim, 'bank-a', draft)
    expect(r.state).toBe('failed')
    expect(r.reason).toMatch(/feature columns of .* differ/)
    const ok = await runJob(sim, 'insurer-c', {
      kind: 'noop',
      parties: draft.parties.map((p) => ({ name: p.name, roles: ['observer'] })),
    })
    expect(ok.state).toBe('succeeded')
  })

  it('a party dropping mid-training fails the job with the reason on the others', async () => {
    const a = sim.nodes[0]
    const job = await call<{ spec: { id: string } }>(
      a.node,
      a.token,
      'POST',
      '/v1/jobs',
      horizontalJob('fedavg-mlp', { seed: 3 }),
    )
    await waitForJob(sim.nodes[2].node, job.spec.id, ['running'], 30_000)
    await new Promise((r) => setTimeout(r, 500))
    await sim.nodes[2].node.stop()
    const views = await Promise.all(
      [0, 1].map((i) => waitForJob(sim.nodes[i].node, job.spec.id, ['failed'], 60_000)),
    )
    for (const v of views) expect(v.reason, views.map((x) => x.reason).join(' | ')).toMatch(/insurer-c/)
  })
})
