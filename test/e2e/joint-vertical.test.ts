import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auc } from '../../learning/metrics/ranking.ts'
import { sigmoid } from '../../learning/models/math.ts'
import { call } from '../../sim/scenario.ts'
import { guest, joined, lrScores, startVerticalPair, type VerticalPair } from '../helpers/vertical.ts'
import { pooledSgd } from '../learning/joint/vertical/reference.ts'

/**
 * Vertical LR and neural network between two real nodes on loopback (bank-a: label and 13 features; lender-b:
 * 10 features), compared with the same algorithm trained in plaintext on the pooled rows of the same split.
 */
let pair: VerticalPair
let ssLrJob = ''
beforeAll(async () => {
  pair = await startVerticalPair()
})
afterAll(async () => pair?.sim.stop())

const LR = { epochs: 20, batchSize: 1024, learningRate: 0.5, seed: 42, clip: 6 }

describe('vertical LR and split NN between two nodes', () => {
  it('secret-shared LR (mpc): AUC >= 0.709 and within 0.005 of plaintext SGD; no raw value in any byte sent', async () => {
    const r = await pair.train('vertical-ss-lr', 'mpc', { triples: 'dealer', dealer: 'bank-a' })
    ssLrJob = r.id
    const { train, test } = await pair.splitOf(r.id)
    const w = pooledSgd(train.X, train.y!, train.featureNames.length, LR)
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.709)
    expect(Math.abs(r.metrics.auc - auc(test.y!, lrScores(w, test)))).toBeLessThanOrEqual(0.005)
    pair.expectNoLeaks(r.id)
  }, 900_000)

  it('federated scoring: the label holder scores customers jointly; the result matches the model parts', async () => {
    const [a, b] = pair.sim.nodes
    const customers = [guest.ids[0], guest.ids[17], guest.ids[29_999]]
    const r = await call<{ scores: Array<{ probability: number }> }>(
      a.node,
      a.token,
      'POST',
      `/v1/federated/${ssLrJob}/score`,
      { ids: customers },
    )
    // Each party's weights are its own (revealed to their owner at the end): recompute the logit in clear.
    type Part = { part: { params: { weights: number[]; bias: number; clip: number } } }
    const pa = (await a.node.store.sub<Part>('model-parts').get(ssLrJob))!.part.params
    const pb = (await b.node.store.sub<Part>('model-parts').get(ssLrJob))!.part.params
    const d = joined.featureNames.length
    for (const [k, cid] of customers.entries()) {
      const row = joined.ids.indexOf(cid)
      const x = Array.from(joined.X.subarray(row * d, row * d + d), (v) =>
        Math.max(-pa.clip, Math.min(pa.clip, v)),
      )
      const w = [...pa.weights, ...pb.weights]
      expect(r.scores[k].probability).toBeCloseTo(sigmoid(x.reduce((s, v, j) => s + v * w[j], pa.bias)), 4)
    }
    await expect(
      call(a.node, a.token, 'POST', `/v1/federated/${ssLrJob}/score`, { ids: ['no-such-customer'] }),
    ).rejects.toThrow(/no customer no-such-customer/)
    const again = await call<{ scores: unknown[] }>(
      a.node,
      a.token,
      'POST',
      `/v1/federated/${ssLrJob}/score`,
      { ids: [customers[0]] },
    )
    expect(again.scores).toHaveLength(1)
  })

  it('HE logistic regression (he): AUC >= 0.709 and within 0.005 of plaintext SGD on the pooled rows', async () => {
    const r = await pair.train('vertical-he-lr', 'he')
    const { train, test } = await pair.splitOf(r.id)
    const w = pooledSgd(train.X, train.y!, train.featureNames.length, LR)
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.709)
    expect(Math.abs(r.metrics.auc - auc(test.y!, lrScores(w, test)))).toBeLessThanOrEqual(0.005)
  }, 900_000)

  it('split neural network: AUC >= 0.755', async () => {
    const r = await pair.train('vertical-split-nn', 'he')
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.755)
  }, 900_000)
})
