import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadCsv } from '../../learning/data/csv.ts'
import { type Dataset, featureMatrix, joinOnId, subset } from '../../learning/data/dataset.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../learning/models/gbdt.ts'
import { sigmoid } from '../../learning/models/math.ts'
import { predictProba } from '../../learning/models/predict.ts'
import type { JobDraft } from '../../protocol/jobs.ts'
import { type SimConsortium, startConsortium } from '../../sim/consortium.ts'
import { call, openPolicies, runJob } from '../../sim/scenario.ts'
import { dataFile } from '../helpers/data.ts'
import { findLeaks } from '../helpers/leaks.ts'
import { pooledSgd } from '../learning/joint/vertical/reference.ts'

/**
 * Vertical joint training between two real nodes on loopback: bank-a holds the label and 13 features of the
 * customers, lender-b 10 other features of the same customers. Accuracy is compared with the same algorithm
 * trained in plaintext on the pooled rows of the same split; every byte each party sends during the SS-LR and
 * SecureBoost jobs is searched for its raw values.
 */
let sim: SimConsortium
const guest = loadCsv(dataFile('default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
const host = loadCsv(dataFile('default_credit_hetero_host.csv'), { id: 'id' })
const joined = joinOnId(guest, host, { prefixes: ['g_', 'h_'] })
const traffic = new Map<string, Map<string, Uint8Array[]>>() // job session → sender → payloads
const jobIds = new Map<string, string>()

function job(algorithm: string, mode: 'mpc' | 'he', algorithmParams: Record<string, unknown> = {}): JobDraft {
  return {
    kind: 'train',
    mode,
    algorithm,
    parties: [
      { name: 'bank-a', roles: ['label-holder'], dataset: 'guest' },
      { name: 'lender-b', roles: ['feature-holder'], dataset: 'host' },
    ],
    params: { seed: 42, algorithm: algorithmParams as Record<string, string | number | boolean> },
    outputs: [{ what: 'metrics', to: ['bank-a', 'lender-b'] }],
    timeoutSeconds: 3600,
  }
}

/** The pooled twin of a job's split: training and test rows of the joined data, in the job's aligned order. */
async function splitOf(id: string): Promise<{ train: Dataset; test: Dataset }> {
  const s = await sim.nodes[0].node.store.sub<{ ids: string[]; test: number[] }>('alignments').get(id)
  if (!s) throw new Error(`no split stored for ${id}`)
  const index = new Map(joined.ids.map((x, i) => [x, i]))
  const test = new Set(s.test)
  const rows = (keep: boolean) => s.ids.filter((_, i) => test.has(i) === keep).map((x) => index.get(x)!)
  return { train: subset(joined, rows(false)), test: subset(joined, rows(true)) }
}

async function train(
  key: string,
  algorithm: string,
  mode: 'mpc' | 'he',
  params: Record<string, unknown> = {},
) {
  const r = await runJob(sim, 'bank-a', job(algorithm, mode, params))
  expect(r.state, r.reason).toBe('succeeded')
  jobIds.set(key, r.id)
  return r
}

beforeAll(async () => {
  sim = await startConsortium({ names: ['bank-a', 'lender-b'] })
  await openPolicies(sim)
  const [a, b] = sim.nodes
  await call(a.node, a.token, 'POST', '/v1/datasets', {
    name: 'guest',
    file: dataFile('default_credit_hetero_guest.csv'),
    id: 'id',
    label: 'y',
  })
  await call(b.node, b.token, 'POST', '/v1/datasets', {
    name: 'host',
    file: dataFile('default_credit_hetero_host.csv'),
    id: 'id',
  })
  for (const n of sim.nodes) {
    n.node.sessions.tap((m) => {
      const bySender = traffic.get(m.session) ?? new Map<string, Uint8Array[]>()
      traffic.set(m.session, bySender)
      const list = bySender.get(m.from) ?? []
      bySender.set(m.from, list)
      list.push(m.payload)
    })
  }
})
afterAll(async () => sim?.stop())

describe('vertical joint training between two nodes', () => {
  it('secret-shared LR (mpc): AUC >= 0.709 and within 0.005 of plaintext SGD on the pooled rows', async () => {
    const r = await train('ss-lr', 'vertical-ss-lr', 'mpc', { triples: 'dealer', dealer: 'bank-a' })
    const { train: tr, test } = await splitOf(r.id)
    const w = pooledSgd(tr.X, tr.y!, tr.featureNames.length, {
      epochs: 20,
      batchSize: 1024,
      learningRate: 0.5,
      seed: 42,
      clip: 6,
    })
    const plain = auc(test.y!, scoresOf(w, test))
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.709)
    expect(Math.abs(r.metrics.auc - plain)).toBeLessThanOrEqual(0.005)
  }, 900_000)

  it('SecureBoost (he): AUC >= 0.774 and within 0.005 of plaintext GBDT on the pooled rows', async () => {
    const r = await train('secureboost', 'secureboost', 'he')
    const { train: tr, test } = await splitOf(r.id)
    const base = trainGbdt(tr.X, tr.y!, tr.featureNames, {
      trees: 30,
      maxDepth: 3,
      learningRate: 0.3,
      maxBins: 32,
      lambda: 1,
    })
    const plain = auc(test.y!, predictProba(base, featureMatrix(test, tr.featureNames), test.ids.length))
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.774)
    expect(Math.abs(r.metrics.auc - plain)).toBeLessThanOrEqual(0.005)
  }, 900_000)

  it('no raw feature value or label of a party appears in any byte it sent during SS-LR and SecureBoost', () => {
    const own: Record<
      string,
      { X: Float64Array; rows: number; cols: number; y?: Uint8Array; text: Set<string> }
    > = {
      'bank-a': {
        X: guest.X,
        rows: guest.ids.length,
        cols: guest.featureNames.length,
        y: guest.y,
        text: textValues('default_credit_hetero_guest.csv'),
      },
      'lender-b': {
        X: host.X,
        rows: host.ids.length,
        cols: host.featureNames.length,
        text: textValues('default_credit_hetero_host.csv'),
      },
    }
    for (const key of ['ss-lr', 'secureboost']) {
      const sessions = traffic.get(`job:${jobIds.get(key)}`)
      expect(sessions, `traffic of ${key} was captured`).toBeDefined()
      for (const [party, data] of Object.entries(own)) {
        const sent = sessions!.get(party) ?? []
        expect(sent.reduce((s, b) => s + b.byteLength, 0)).toBeGreaterThan(10_000)
        const leaks = findLeaks(sent, data)
        expect(leaks, `${party} in ${key}: ${leaks.examples.join('; ')}`).toMatchObject({
          float64: 0,
          float32Pairs: 0,
          text: 0,
          labels: 0,
        })
      }
    }
  })

  it('federated scoring: the label holder scores customers jointly; the result matches the model parts', async () => {
    const id = jobIds.get('ss-lr')!
    const [a, b] = sim.nodes
    const customers = [guest.ids[0], guest.ids[17], guest.ids[29_999]]
    const r = await call<{ scores: Array<{ id: string; probability: number }> }>(
      a.node,
      a.token,
      'POST',
      `/v1/federated/${id}/score`,
      { ids: customers },
    )
    // Both parties' weights are their own (revealed to their owner at the end): recompute the logit in clear.
    const pa = (await a.node.store
      .sub<{ part: { params: { weights: number[]; bias: number; clip: number } } }>('model-parts')
      .get(id))!.part.params
    const pb = (await b.node.store
      .sub<{ part: { params: { weights: number[]; clip: number } } }>('model-parts')
      .get(id))!.part.params
    for (const [k, cid] of customers.entries()) {
      const row = joined.ids.indexOf(cid)
      const d = joined.featureNames.length
      const x = Array.from(joined.X.subarray(row * d, row * d + d), (v) =>
        Math.max(-pa.clip, Math.min(pa.clip, v)),
      )
      const w = [...pa.weights, ...pb.weights]
      const z = x.reduce((s, v, j) => s + v * w[j], pa.bias)
      expect(r.scores[k].probability).toBeCloseTo(sigmoid(z), 4)
    }
    // An unknown customer is a clear error, and the node keeps serving.
    await expect(
      call(a.node, a.token, 'POST', `/v1/federated/${id}/score`, { ids: ['no-such-customer'] }),
    ).rejects.toThrow(/no customer no-such-customer/)
    const again = await call<{ scores: unknown[] }>(a.node, a.token, 'POST', `/v1/federated/${id}/score`, {
      ids: [customers[0]],
    })
    expect(again.scores).toHaveLength(1)
  })

  it('HE logistic regression (he): AUC >= 0.709 and within 0.005 of plaintext SGD on the pooled rows', async () => {
    const r = await train('he-lr', 'vertical-he-lr', 'he')
    const { train: tr, test } = await splitOf(r.id)
    const w = pooledSgd(tr.X, tr.y!, tr.featureNames.length, {
      epochs: 20,
      batchSize: 1024,
      learningRate: 0.5,
      seed: 42,
      clip: 6,
    })
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.709)
    expect(Math.abs(r.metrics.auc - auc(test.y!, scoresOf(w, test)))).toBeLessThanOrEqual(0.005)
  }, 900_000)

  it('split neural network: AUC >= 0.755', async () => {
    const r = await train('split-nn', 'vertical-split-nn', 'he')
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.755)
  }, 900_000)
})

function scoresOf(w: Float64Array, d: Dataset): Float64Array {
  const k = d.featureNames.length
  const out = new Float64Array(d.ids.length)
  for (let i = 0; i < d.ids.length; i++) {
    let z = w[k]
    for (let j = 0; j < k; j++) z += w[j] * Math.max(-6, Math.min(6, d.X[i * k + j]))
    out[i] = sigmoid(z)
  }
  return out
}

/** The decimal text of every cell of the file's feature columns, as the file writes it. */
function textValues(file: string): Set<string> {
  const out = new Set<string>()
  const lines = readFileSync(dataFile(file), 'utf8').trim().split('\n')
  const header = lines[0].split(',')
  const skip = new Set(['id', 'y'].map((c) => header.indexOf(c)))
  for (const line of lines.slice(1)) {
    line.split(',').forEach((cell, j) => {
      if (!skip.has(j) && /\.\d{4,}/.test(cell)) out.add(cell)
    })
  }
  return out
}
