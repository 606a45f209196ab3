import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../../crypto/channel.ts'
import { isSyndicateError } from '../../../../crypto/errors.ts'
import { heLogisticRegression } from '../../../../learning/joint/vertical/index.ts'
import { auc } from '../../../../learning/metrics/ranking.ts'
import { trainLogisticRegression } from '../../../../learning/models/lr.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import {
  columns,
  contains,
  context,
  creditSplit,
  distinctiveValues,
  encodings,
  head,
  recordingChannels,
  runVertical,
  THREE,
  TWO,
} from './helpers.ts'
import { pooledSgd, pooledWeights } from './reference.ts'

const { train: fullTrain, test: fullTest } = creditSplit()
const train = head(fullTrain, 1000)
const test = head(fullTest, 500)
const base = { epochs: 3, batchSize: 250, learningRate: 0.5, clip: 6, seed: 5 }

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe('HE vertical LR (FATE hetero-LR shape, BFV)', () => {
  const twin = pooledSgd(train.X, train.y as Uint8Array, 23, base)

  it('two parties: the weights of pooled SGD with the exact sigmoid, and plaintext-LR accuracy', async () => {
    const { parts, scores } = await runVertical(heLogisticRegression, TWO, train, test, base)
    expect(maxDiff(pooledWeights(parts), twin)).toBeLessThan(1e-4)
    expect(parts[1].params).not.toHaveProperty('bias')
    const plain = trainLogisticRegression(train.X, train.y as Uint8Array, train.featureNames, {
      solver: 'sgd',
      ...base,
      preprocess: { standardize: false },
    })
    const ref = auc(test.y as Uint8Array, predictProba(plain, test.X, test.ids.length))
    expect(Math.abs(auc(test.y as Uint8Array, scores) - ref)).toBeLessThan(0.005)
  }, 30_000)

  it('three parties, and no raw feature value in anything a party sends', async () => {
    const small = head(train, 400)
    const params = { ...base, epochs: 2, batchSize: 200 }
    const rec = recordingChannels(THREE.names)
    const { parts } = await runVertical(
      heLogisticRegression,
      THREE,
      small,
      head(test, 50),
      params,
      rec.channels,
    )
    expect(maxDiff(pooledWeights(parts), pooledSgd(small.X, small.y as Uint8Array, 23, params))).toBeLessThan(
      1e-4,
    )
    for (const [i, name] of THREE.names.entries()) {
      const own = columns(small, ...THREE.blocks[i], false)
      const bytes = Buffer.concat(rec.sent.get(name) as Uint8Array[])
      for (const v of distinctiveValues(own.X, 40)) {
        for (const enc of encodings(v)) expect(contains(bytes, enc)).toBe(false)
      }
    }
  }, 30_000)

  it('a feature holder sending malformed partial logits makes the label holder fail with its name', async () => {
    const channels = createMemoryChannels(TWO.names)
    const guest = heLogisticRegression.train(
      context(channels, 'guest', { epochs: 1, batchSize: 100 }),
      columns(head(train, 100), 0, 13, true),
    )
    const host = channels.get('host')!
    await host.send(
      'guest',
      'job/train/helr/shape',
      new TextEncoder().encode('{"rows":100,"d":10,"label":false}'),
    )
    await host.send('guest', 'job/train/helr/e0/b0/u', new Uint8Array(7))
    await expect(guest).rejects.toSatisfy(
      (e) => isSyndicateError(e, 'ERR_JOINT_BAD_MESSAGE') && e.message.includes('host'),
    )
  })
})
