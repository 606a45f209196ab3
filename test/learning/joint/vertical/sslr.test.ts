import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../../../crypto/errors.ts'
import { ssLogisticRegression } from '../../../../learning/joint/vertical/index.ts'
import { sigmoidPoly } from '../../../../learning/joint/vertical/sigmoid-poly.ts'
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
  expectAllReject,
  head,
  recordingChannels,
  runVertical,
  THREE,
  TWO,
} from './helpers.ts'
import { pooledSgd, pooledWeights } from './reference.ts'

const { train: fullTrain, test: fullTest } = creditSplit()
const train = head(fullTrain, 1200)
const test = head(fullTest, 600)
const base = { epochs: 4, batchSize: 300, learningRate: 0.5, clip: 6, seed: 3 }

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe('secret-shared vertical LR', () => {
  const twin = pooledSgd(train.X, train.y as Uint8Array, 23, { ...base, sig: sigmoidPoly })

  it('two parties with a dealer: the weights of pooled SGD with the same polynomial, each block only at its owner', async () => {
    const { parts, scores } = await runVertical(ssLogisticRegression, TWO, train, test, {
      ...base,
      triples: 'dealer',
      dealer: 'guest',
    })
    expect(parts[0].params).toHaveProperty('bias')
    expect(parts[1].params).not.toHaveProperty('bias')
    expect((parts[0].params as { weights: number[] }).weights).toHaveLength(13)
    expect((parts[1].params as { weights: number[] }).weights).toHaveLength(10)
    expect(maxDiff(pooledWeights(parts), twin)).toBeLessThan(2e-4)
    const plain = trainLogisticRegression(train.X, train.y as Uint8Array, train.featureNames, {
      solver: 'sgd',
      ...base,
      preprocess: { standardize: false },
    })
    const ref = auc(test.y as Uint8Array, predictProba(plain, test.X, test.ids.length))
    expect(Math.abs(auc(test.y as Uint8Array, scores) - ref)).toBeLessThan(0.01)
  })

  it('three parties, two computing (the default): the third shares its block in once and gets only its weights', async () => {
    const rec = recordingChannels(THREE.names)
    const { parts } = await runVertical(
      ssLogisticRegression,
      THREE,
      train,
      test,
      { ...base, triples: 'dealer', dealer: 'guest' },
      rec.channels,
    )
    expect(maxDiff(pooledWeights(parts), twin)).toBeLessThan(2e-4)
    expect((parts[2].params as { weights: number[] }).weights).toHaveLength(5)
    // host2's training traffic is its 5-column block once (seed to one party, remainder to the other); a
    // computing party opens values every round (here 16 batches: about nine times more)
    const sent = (name: string) => rec.sent.get(name)!.reduce((a, b) => a + b.byteLength, 0)
    const block = 8 * train.ids.length * 5
    expect(sent('host2')).toBeLessThan(block + 8 * 4 * test.ids.length + 4096)
    expect(sent('host1')).toBeGreaterThan(5 * block)
  })

  it('three computing parties (computeParties) give the same model', async () => {
    const { parts } = await runVertical(ssLogisticRegression, THREE, train, test, {
      ...base,
      triples: 'dealer',
      dealer: 'guest',
      computeParties: THREE.names,
    })
    expect(maxDiff(pooledWeights(parts), twin)).toBeLessThan(2e-4)
  })

  it('the label holder can stay out of the computation: its labels and block are input, it gets its weights and bias', async () => {
    const { parts, scores } = await runVertical(ssLogisticRegression, THREE, train, test, {
      ...base,
      triples: 'dealer',
      dealer: 'guest',
      computeParties: ['host1', 'host2'],
    })
    expect(parts[0].params).toHaveProperty('bias')
    expect(maxDiff(pooledWeights(parts), twin)).toBeLessThan(2e-4)
    expect(scores).toHaveLength(test.ids.length)
  })

  it('an arbiter without data can deal: it computes nothing and the model is the same', async () => {
    const setup = {
      names: ['guest', 'host', 'arbiter'],
      blocks: [
        [0, 13],
        [13, 23],
        [0, 0],
      ] as [number, number][],
    }
    const { parts } = await runVertical(ssLogisticRegression, setup, train, test, {
      ...base,
      triples: 'dealer',
      dealer: 'arbiter',
    })
    expect(parts[2].features).toEqual([])
    expect(maxDiff(pooledWeights(parts.slice(0, 2)), twin)).toBeLessThan(2e-4)
  })

  it('dealer-free (HE triples) for two parties', async () => {
    const small = head(train, 100)
    const params = { ...base, epochs: 1, batchSize: 100 }
    const { parts } = await runVertical(ssLogisticRegression, TWO, small, head(test, 50), params)
    const ref = pooledSgd(small.X, small.y as Uint8Array, 23, { ...params, sig: sigmoidPoly })
    expect(maxDiff(pooledWeights(parts), ref)).toBeLessThan(2e-4)
  }, 60_000)

  it('sends no raw feature value of any party', async () => {
    const small = head(train, 300)
    const rec = recordingChannels(THREE.names)
    await runVertical(
      ssLogisticRegression,
      THREE,
      small,
      head(test, 50),
      { ...base, epochs: 2, triples: 'dealer', dealer: 'guest' },
      rec.channels,
    )
    for (const [i, name] of THREE.names.entries()) {
      const own = columns(small, ...THREE.blocks[i], false)
      const bytes = Buffer.concat(rec.sent.get(name) as Uint8Array[])
      expect(bytes.byteLength).toBeGreaterThan(0)
      for (const v of distinctiveValues(own.X, 40)) {
        for (const enc of encodings(v)) expect(contains(bytes, enc)).toBe(false)
      }
    }
  })

  it('refuses unknown parameters, HE triples for three parties and a dealer mode without a named dealer', async () => {
    const rec = recordingChannels(TWO.names)
    const data = columns(train, 0, 13, true)
    await expect(
      ssLogisticRegression.train(context(rec.channels, 'guest', { epoch: 3 }), data),
    ).rejects.toSatisfy((e) => isSyndicateError(e, 'ERR_JOINT_PARAMS'))
    const three = recordingChannels(THREE.names)
    const runs = THREE.names.map((p, i) =>
      ssLogisticRegression.train(
        context(three.channels, p, { triples: 'he' }),
        columns(train, ...THREE.blocks[i], i === 0),
      ),
    )
    await expectAllReject(runs, 'ERR_JOINT_PARAMS')
    const strangers = recordingChannels(THREE.names)
    await expectAllReject(
      THREE.names.map((p, i) =>
        ssLogisticRegression.train(
          context(strangers.channels, p, {
            triples: 'dealer',
            dealer: 'guest',
            computeParties: ['guest', 'eve'],
          }),
          columns(train, ...THREE.blocks[i], i === 0),
        ),
      ),
      'ERR_JOINT_PARAMS',
    )
    const unnamed = recordingChannels(THREE.names)
    await expectAllReject(
      THREE.names.map((p, i) =>
        ssLogisticRegression.train(
          context(unnamed.channels, p, {}),
          columns(train, ...THREE.blocks[i], i === 0),
        ),
      ),
      'ERR_JOINT_PARAMS',
    )
  })

  it('refuses parties whose aligned rows differ', async () => {
    const rec = recordingChannels(TWO.names)
    const runs = [
      ssLogisticRegression.train(context(rec.channels, 'guest', {}), columns(train, 0, 13, true)),
      ssLogisticRegression.train(context(rec.channels, 'host', {}), columns(head(train, 100), 13, 23, false)),
    ]
    await expectAllReject(runs, 'ERR_JOINT_DATA')
  })
})
