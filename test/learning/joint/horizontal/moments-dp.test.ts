import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../../crypto/channel.ts'
import { RdpAccountant } from '../../../../crypto/dp/rdp.ts'
import { loadCsv } from '../../../../learning/data/csv.ts'
import { featureMatrix, subset } from '../../../../learning/data/dataset.ts'
import { decodeMessage, encodeMessage } from '../../../../learning/joint/horizontal/aggregate.ts'
import { fedAvgLogisticRegression, type HflModelParams } from '../../../../learning/joint/horizontal/index.ts'
import { secureMoments } from '../../../../learning/joint/horizontal/moments.ts'
import { fitStandardize } from '../../../../learning/preprocess/scale.ts'
import { DATA, fulfilled, HOMO_PARTIES, loadHomo, localData, runParties } from './run.ts'

describe('secure global standardisation', () => {
  it('matches pooled standardisation of raw, mixed-scale data (UCI amounts in the millions)', async () => {
    const raw = loadCsv(join(DATA, 'UCI_Credit_Card.csv'), { id: 'ID', label: 'default.payment.next.month' })
    const d = raw.featureNames.length
    const names = ['a', 'b', 'c']
    const cuts = [0, 4000, 7000, 12000]
    const X = featureMatrix(raw, raw.featureNames)
    const channels = createMemoryChannels(names)
    const results = await Promise.all(
      names.map((self, i) =>
        secureMoments(
          {
            channel: channels.get(self)!,
            self,
            aggregator: 'a',
            tagPrefix: 't/',
            active: names,
            fracBits: 16,
            roundTimeoutMs: 5000,
            signal: new AbortController().signal,
          },
          X.subarray(cuts[i] * d, cuts[i + 1] * d),
          cuts[i + 1] - cuts[i],
          d,
          true,
        ),
      ),
    )
    const want = fitStandardize(X.subarray(0, 12000 * d), 12000, d)
    for (const r of results) {
      expect(r.rows).toBe(12000)
      expect(r.active).toEqual(names)
      for (let j = 0; j < d; j++) {
        expect(Math.abs(r.mean[j] - want.mean[j])).toBeLessThan(1e-6 * Math.max(1, Math.abs(want.mean[j])))
        expect(Math.abs(r.scale[j] / want.scale[j] - 1)).toBeLessThan(1e-6)
      }
    }
  })

  it('trains on raw data with the global moments in the model (every party identical)', async () => {
    const raw = loadCsv(join(DATA, 'UCI_Credit_Card.csv'), { id: 'ID', label: 'default.payment.next.month' })
    const data = new Map(
      ['a', 'b', 'c'].map((n, i) => [
        n,
        localData(
          subset(
            raw,
            Array.from({ length: 300 }, (_, k) => i * 300 + k),
          ),
        ),
      ]),
    )
    const parts = fulfilled(await runParties(fedAvgLogisticRegression, data, { params: { rounds: 2 } }))
    const pre = [...parts.values()].map((p) => (p.params as HflModelParams).model.preprocessing)
    const X = featureMatrix(
      subset(
        raw,
        Array.from({ length: 900 }, (_, k) => k),
      ),
      raw.featureNames,
    )
    const want = fitStandardize(X, 900, raw.featureNames.length)
    for (const p of pre) {
      expect(p).toEqual(pre[0])
      p.standardize!.scale.forEach((s, j) => {
        expect(s / want.scale[j]).toBeCloseTo(1, 6)
      })
    }
  })
})

describe('local DP-SGD', () => {
  const data = new Map(
    HOMO_PARTIES.map((n) => [
      n,
      localData(
        subset(
          loadHomo(n),
          Array.from({ length: 400 }, (_, k) => k),
        ),
      ),
    ]),
  )

  it('meets a target epsilon and reports the spend the accountant gives', async () => {
    const params = { rounds: 3, batchSize: 40, dp: { epsilon: 2, delta: 1e-5, clipNorm: 1 } }
    const parts = fulfilled(await runParties(fedAvgLogisticRegression, data, { params }))
    for (const p of parts.values()) {
      const dp = (p.params as HflModelParams).dp!
      expect(dp.steps).toBe(3 * 10)
      expect(dp.sampleRate).toBeCloseTo(0.1, 12)
      expect(dp.epsilon).toBeLessThanOrEqual(2)
      expect(dp.epsilon).toBeGreaterThan(1.9) // the multiplier is the smallest that meets the target
      const again = new RdpAccountant()
        .add({ kind: 'subsampled-gaussian', noiseMultiplier: dp.noiseMultiplier, sampleRate: 0.1, steps: 30 })
        .epsilon(1e-5).epsilon
      expect(dp.epsilon).toBeCloseTo(again, 10)
    }
  })

  it('adds fresh noise: the same job twice gives different models, without DP identical ones', async () => {
    const run = async (dp: boolean) => {
      const params = {
        rounds: 1,
        batchSize: 40,
        ...(dp ? { dp: { noiseMultiplier: 1, clipNorm: 1, delta: 1e-5 } } : {}),
      }
      const p = fulfilled(await runParties(fedAvgLogisticRegression, data, { params })).get('guest')!
      return (p.params as HflModelParams).model
    }
    expect(await run(true)).not.toEqual(await run(true))
    expect(await run(false)).toEqual(await run(false))
  })
})

describe('central DP (DP-FedSGD, noise added once by the aggregator)', () => {
  it('gives every party the same noisy model and the same spend', async () => {
    const data = new Map(
      HOMO_PARTIES.map((n) => [
        n,
        localData(
          subset(
            loadHomo(n),
            Array.from({ length: 200 }, (_, k) => k),
          ),
        ),
      ]),
    )
    const params = { rounds: 2, batchSize: 60, dp: { mode: 'central', epsilon: 4, delta: 1e-5, clipNorm: 1 } }
    const parts = [...fulfilled(await runParties(fedAvgLogisticRegression, data, { params })).values()]
    const spends = parts.map((p) => (p.params as HflModelParams).dp!)
    for (const p of parts)
      expect((p.params as HflModelParams).model).toEqual((parts[0].params as HflModelParams).model)
    for (const s of spends) expect(s).toEqual(spends[0])
    // Sampling runs over all 600 rows: q = 60 / 600, 10 steps per epoch.
    expect(spends[0]).toMatchObject({ mode: 'central', sampleRate: 0.1, steps: 20 })
    expect(spends[0].epsilon).toBeLessThanOrEqual(4)
    expect(spends[0].epsilon).toBeGreaterThan(3.8)
  })

  it('refuses FedProx or several local epochs with central DP', async () => {
    const data = new Map(
      HOMO_PARTIES.map((n) => [
        n,
        localData(
          subset(
            loadHomo(n),
            Array.from({ length: 50 }, (_, k) => k),
          ),
        ),
      ]),
    )
    const dp = { mode: 'central', noiseMultiplier: 1, clipNorm: 1, delta: 1e-5 }
    for (const extra of [{ mu: 0.1 }, { localEpochs: 2 }]) {
      const results = await runParties(fedAvgLogisticRegression, data, { params: { dp, ...extra } })
      for (const r of results.values())
        expect((r as PromiseRejectedResult).reason.code).toBe('ERR_HFL_PARAMS')
    }
  })
})

describe('messages from peers', () => {
  it('rejects malformed public messages with ERR_HFL_BAD_MESSAGE', () => {
    const good = encodeMessage({ stop: false }, Float64Array.of(1, 2, 3))
    expect(decodeMessage('p', good, 3).vector).toEqual(Float64Array.of(1, 2, 3))
    const cases = [
      good.subarray(0, 3),
      good.subarray(0, good.length - 8),
      encodeMessage({ stop: false }, Float64Array.of(1, Number.NaN, 3)),
      encodeMessage([1, 2], Float64Array.of(1, 2, 3)),
      Uint8Array.of(255, 255, 255, 255, 0, 0, 0, 0),
    ]
    for (const m of cases)
      expect(() => decodeMessage('p', m, 3)).toThrow(expect.objectContaining({ code: 'ERR_HFL_BAD_MESSAGE' }))
  })
})
