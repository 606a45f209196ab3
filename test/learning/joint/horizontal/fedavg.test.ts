import { describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../../crypto/channel.ts'
import { concatRows, subset } from '../../../../learning/data/dataset.ts'
import {
  fedAvgLogisticRegression,
  fedAvgMlp,
  type HflModelParams,
} from '../../../../learning/joint/horizontal/index.ts'
import { lrNet, trainLocal } from '../../../../learning/joint/horizontal/local.ts'
import type { LocalData } from '../../../../learning/joint/types.ts'
import { auc } from '../../../../learning/metrics/index.ts'
import { trainLogisticRegression } from '../../../../learning/models/lr.ts'
import { trainMlp } from '../../../../learning/models/mlp.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import { createRng } from '../../../../learning/random.ts'
import { fulfilled, HOMO_PARTIES, loadHomo, localData, runParties } from './run.ts'

const full = HOMO_PARTIES.map(loadHomo)
const test = localData(loadHomo('test'))
const pooled = localData(concatRows(full))
const fullData = new Map(HOMO_PARTIES.map((n, i) => [n, localData(full[i])]))
/** Small party files (a few hundred rows each) for protocol tests. */
const small = (rows: number[]) =>
  new Map(
    HOMO_PARTIES.map((n, i) => [
      n,
      localData(
        subset(
          full[i],
          Array.from({ length: rows[i] }, (_, k) => k),
        ),
      ),
    ]),
  )

const paramsOf = (p: { params: unknown }) => p.params as HflModelParams

describe('FedAvg protocol', () => {
  it('every party ends with the same model: the row-weighted average of the local models', async () => {
    const data = small([300, 200, 100])
    const params = { rounds: 1, standardize: false, batchSize: 50, learningRate: 0.3, l2: 0.01 }
    const parts = fulfilled(await runParties(fedAvgLogisticRegression, data, { params, seed: 3 }))
    const models = [...parts.values()].map((p) => paramsOf(p).model)
    for (const m of models) expect(m).toEqual(models[0])

    // The same local runs in the clear, averaged by row count.
    const expected = new Float64Array(24)
    const names = [...data.keys()]
    let total = 0
    names.forEach((name, index) => {
      const d = data.get(name)!
      const { w } = trainLocal(
        {
          net: lrNet(23),
          Z: d.X,
          y: d.y!,
          d: 23,
          rows: Uint32Array.from({ length: d.rows }, (_, i) => i),
          batchSize: 50,
          epochs: 1,
          mu: 0,
          optimizer: { kind: 'sgd', learningRate: 0.3, l2: 0.01 },
          rng: createRng((3 + Math.imul(0x9e3779b9, index + 1)) >>> 0),
        },
        new Float64Array(24),
        0,
      )
      for (let k = 0; k < 24; k++) expected[k] += d.rows * w[k]
      total += d.rows
    })
    const got = models[0]
    if (got.kind !== 'lr') throw new Error('expected an LR model')
    for (let j = 0; j < 23; j++) expect(got.weights[j]).toBeCloseTo(expected[j] / total, 6)
    expect(got.bias).toBeCloseTo(expected[23] / total, 6)
  })

  it('FedProx (mu > 0) keeps local models near the global one', async () => {
    const data = small([200, 200, 200])
    const dist = async (mu: number) => {
      const parts = fulfilled(
        await runParties(fedAvgLogisticRegression, data, {
          params: { rounds: 1, batchSize: 10, learningRate: 0.5, mu },
        }),
      )
      const m = paramsOf(parts.get('guest')!).model
      if (m.kind !== 'lr') throw new Error('expected an LR model')
      return Math.hypot(...m.weights, m.bias)
    }
    const plain = await dist(0)
    const prox = await dist(1.5)
    expect(prox).toBeLessThan(plain / 2)
  })

  it('rejects parties whose features differ, on every party', async () => {
    const data = small([100, 100, 100])
    const odd = data.get('host_2')!
    data.set('host_2', { ...odd, features: odd.features.map((f, i) => (i === 0 ? 'other' : f)) })
    const results = await runParties(fedAvgLogisticRegression, data, { params: { rounds: 1 } })
    for (const r of results.values()) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason.code).toBe('ERR_HFL_SCHEMA')
    }
  })

  it('refuses unknown and invalid parameters', async () => {
    const data = small([100, 100, 100])
    for (const params of [
      { epochs: 3 },
      { rounds: 0 },
      { hidden: [4] },
      { dp: { epsilon: 1, noiseMultiplier: 1 } },
    ]) {
      const results = await runParties(fedAvgLogisticRegression, data, { params })
      for (const r of results.values())
        expect((r as PromiseRejectedResult).reason.code).toBe('ERR_HFL_PARAMS')
    }
  })

  it('completes the round without a party that drops mid-training (secure aggregation dropout)', async () => {
    const names = ['agg', 'c1', 'c2', 'c3']
    const rows = full.flatMap((ds) => [subset(ds, [...Array(150).keys()])])
    const data = new Map<string, LocalData>([
      ['agg', localData(rows[0])],
      ['c1', localData(rows[1])],
      ['c2', localData(rows[2])],
      [
        'c3',
        localData(
          subset(
            full[0],
            Array.from({ length: 150 }, (_, k) => 1000 + k),
          ),
        ),
      ],
    ])
    const base = createMemoryChannels(names)
    // c3 crashes when it is about to send its fifth masked input (after the moments, in the training rounds).
    const c3 = base.get('c3')!
    let maskedSent = 0
    const crashing: PartyChannel = {
      ...c3,
      parties: c3.parties,
      self: c3.self,
      async send(to, tag, payload) {
        if (tag.endsWith('/masked') && ++maskedSent === 5) throw new Error('c3 crashed')
        return c3.send(to, tag, payload)
      },
      recv: (from, tag) => c3.recv(from, tag),
    }
    base.set('c3', crashing)
    const results = await runParties(fedAvgLogisticRegression, data, {
      channels: base,
      aggregator: 'agg',
      params: { rounds: 4, roundTimeoutMs: 300 },
    })
    expect(results.get('c3')!.status).toBe('rejected')
    const survivors = ['agg', 'c1', 'c2'].map((n) => results.get(n)!)
    for (const r of survivors) expect(r.status).toBe('fulfilled')
    const parts = survivors.map((r) => (r as PromiseFulfilledResult<{ params: unknown }>).value)
    expect(paramsOf(parts[0]).contributors).toEqual(['agg', 'c1', 'c2'])
    expect(paramsOf(parts[0]).rounds).toBe(4)
    for (const p of parts) expect(paramsOf(p).model).toEqual(paramsOf(parts[0]).model)
  })

  it('goes ahead without a party that never shows up', async () => {
    const names = ['agg', 'c1', 'c2', 'absent']
    const rows = (ds: (typeof full)[number]) => localData(subset(ds, [...Array(120).keys()]))
    const data = new Map<string, LocalData>([
      ['agg', rows(full[0])],
      ['c1', rows(full[1])],
      ['c2', rows(full[2])],
    ])
    const channels = createMemoryChannels(names)
    const results = await runParties(fedAvgLogisticRegression, data, {
      channels,
      aggregator: 'agg',
      params: { rounds: 2, roundTimeoutMs: 200 },
    })
    for (const r of results.values()) expect(r.status).toBe('fulfilled')
    const part = (results.get('c2') as PromiseFulfilledResult<{ params: unknown }>).value
    expect(paramsOf(part).contributors).toEqual(['agg', 'c1', 'c2'])
  })

  it('sends no raw feature value of a client in any byte', async () => {
    const data = small([120, 120, 120])
    const base = createMemoryChannels([...data.keys()])
    const sent: Uint8Array[] = []
    const spy = base.get('host_1')!
    base.set('host_1', {
      ...spy,
      parties: spy.parties,
      self: spy.self,
      send: (to, tag, payload) => {
        sent.push(payload.slice())
        return spy.send(to, tag, payload)
      },
      recv: (from, tag) => spy.recv(from, tag),
    })
    fulfilled(await runParties(fedAvgMlp, data, { channels: base, params: { rounds: 2, hidden: [4] } }))
    const traffic = Buffer.concat(sent)
    const X = data.get('host_1')!.X
    let searched = 0
    for (const v of new Set(X)) {
      if (Math.abs(v) < 1e-3 || Number.isInteger(v)) continue // too common a pattern to mean anything
      searched++
      expect(traffic.includes(Buffer.from(Float64Array.of(v).buffer))).toBe(false)
      expect(traffic.includes(Buffer.from(Float32Array.of(v).buffer))).toBe(false)
      expect(traffic.includes(Buffer.from(String(v)))).toBe(false)
    }
    expect(searched).toBeGreaterThan(100)
  })
})

describe('FedAvg accuracy on the homo files (pooled plaintext with the same hyper-parameters)', () => {
  it('FedAvg-LR: AUC >= 0.725 and within 0.005 of pooled SGD LR', async () => {
    const params = { rounds: 30, batchSize: 256, learningRate: 0.5 }
    const part = fulfilled(await runParties(fedAvgLogisticRegression, fullData, { params, seed: 7 })).get(
      'host_1',
    )!
    const fed = auc(test.y!, fedAvgLogisticRegression.predict(part, test))
    const plain = trainLogisticRegression(pooled.X, pooled.y!, pooled.features, {
      solver: 'sgd',
      epochs: 30,
      batchSize: 256,
      learningRate: 0.5,
      seed: 7,
    })
    const plainAuc = auc(test.y!, predictProba(plain, test.X, test.rows))
    expect(fed).toBeGreaterThanOrEqual(0.725)
    expect(Math.abs(fed - plainAuc)).toBeLessThanOrEqual(0.005)
  })

  it('FedAvg-MLP: AUC >= 0.765 and within 0.005 of the pooled MLP', async () => {
    const part = fulfilled(await runParties(fedAvgMlp, fullData, { seed: 7 })).get('guest')!
    const fed = auc(test.y!, fedAvgMlp.predict(part, test))
    const plain = trainMlp(pooled.X, pooled.y!, pooled.features, { seed: 7 })
    const plainAuc = auc(test.y!, predictProba(plain, test.X, test.rows))
    expect(fed).toBeGreaterThanOrEqual(0.765)
    expect(Math.abs(fed - plainAuc)).toBeLessThanOrEqual(0.005)
  })
})
