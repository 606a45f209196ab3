import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { featureMatrix } from '../../learning/data/dataset.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../learning/models/gbdt.ts'
import { predictProba } from '../../learning/models/predict.ts'
import { startVerticalPair, type VerticalPair } from '../helpers/vertical.ts'

/** SecureBoost between two real nodes on loopback, against plaintext GBDT on the pooled rows of the same split. */
let pair: VerticalPair
beforeAll(async () => {
  pair = await startVerticalPair()
})
afterAll(async () => pair?.sim.stop())

describe('SecureBoost between two nodes', () => {
  it('AUC >= 0.774 and within 0.005 of plaintext GBDT; no raw value or label in any byte a party sent', async () => {
    const r = await pair.train('secureboost', 'he')
    const { train, test } = await pair.splitOf(r.id)
    const base = trainGbdt(train.X, train.y!, train.featureNames, {
      trees: 30,
      maxDepth: 3,
      learningRate: 0.3,
      maxBins: 32,
      lambda: 1,
    })
    const plain = auc(test.y!, predictProba(base, featureMatrix(test, train.featureNames), test.ids.length))
    expect(r.metrics.auc).toBeGreaterThanOrEqual(0.774)
    expect(Math.abs(r.metrics.auc - plain)).toBeLessThanOrEqual(0.005)
    pair.expectNoLeaks(r.id)
  }, 900_000)
})
