import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../../crypto/channel.ts'
import { isSyndicateError } from '../../../../crypto/errors.ts'
import { decodeFixed } from '../../../../crypto/fixed.ts'
import { epochOrders } from '../../../../learning/joint/vertical/common.ts'
import {
  heLogisticRegression,
  splitNeuralNet,
  ssLogisticRegression,
} from '../../../../learning/joint/vertical/index.ts'
import { MaskedSum } from '../../../../learning/joint/vertical/masked-sum.ts'
import { POLY_RANGE, sigmoidPoly } from '../../../../learning/joint/vertical/sigmoid-poly.ts'
import { sigmoid } from '../../../../learning/models/math.ts'
import { createRng, shuffleInPlace } from '../../../../learning/random.ts'
import {
  columns,
  context,
  creditSplit,
  expectAllReject,
  head,
  recordingChannels,
  runVertical,
} from './helpers.ts'

const train = head(creditSplit().train, 200)
const guestData = () => columns(train, 0, 13, true)
const hostData = () => columns(train, 13, 23, false)

describe('vertical building blocks', () => {
  it('the SS-LR sigmoid polynomial stays within 0.061 of the sigmoid on [-8, 8]', () => {
    let worst = 0
    for (let x = -POLY_RANGE; x <= POLY_RANGE; x += 0.001)
      worst = Math.max(worst, Math.abs(sigmoidPoly(x) - sigmoid(x)))
    expect(worst).toBeLessThan(0.061)
    expect(Math.abs(sigmoidPoly(0) - 0.5)).toBeLessThan(1e-12)
  })

  it('batch order is the permutation learning/models/lr.ts draws from the same seed', () => {
    const rng = createRng(9)
    const order = Uint32Array.from({ length: 50 }, (_, i) => i)
    for (const ours of epochOrders(50, 3, 9)) {
      shuffleInPlace(order, rng)
      expect(Array.from(ours)).toEqual(Array.from(order))
    }
  })

  it("masked sums: the label holder gets the exact sum, no single feature holder's vector", async () => {
    const names = ['guest', 'host1', 'host2']
    const rec = recordingChannels(names)
    const v = { host1: Float64Array.of(1.5, -2.25, 3), host2: Float64Array.of(0.125, 4, -8) }
    const [sum] = await Promise.all(
      names.map(async (p) => {
        const ms = await MaskedSum.create(context(rec.channels, p, {}), 'job/sum')
        if (p === 'guest') return ms.receive('job/sum/v', 3)
        await ms.send('job/sum/v', v[p as 'host1' | 'host2'])
      }),
    )
    expect(Array.from(sum as Float64Array)).toEqual([1.625, 1.75, -5])
    for (const p of ['host1', 'host2'] as const) {
      const sent = rec.sent.get(p) as Uint8Array[]
      const toGuest = sent[sent.length - 1]
      const seen = decodeFixed(new BigUint64Array(toGuest.slice().buffer), 32)
      expect(seen.some((x, i) => Math.abs(x - v[p][i]) > 1)).toBe(true)
    }
  })

  it.each([
    ['ss-lr', ssLogisticRegression],
    ['he-lr', heLogisticRegression],
    ['split-nn', splitNeuralNet],
  ])('%s: labels at a feature holder are refused on every party', async (_, algo) => {
    const channels = createMemoryChannels(['guest', 'host'])
    await expectAllReject(
      [
        algo.train(context(channels, 'guest', {}), guestData()),
        algo.train(context(channels, 'host', {}), { ...hostData(), y: train.y }),
      ],
      'ERR_JOINT_DATA',
    )
  })

  it.each([
    ['ss-lr', ssLogisticRegression, { triples: 'dealer', dealer: 'guest', epochs: 2, batchSize: 100 }],
    ['he-lr', heLogisticRegression, { epochs: 2, batchSize: 100 }],
    ['split-nn', splitNeuralNet, { hidden: [4], maxEpochs: 2, batchSize: 50 }],
  ])('%s: a label holder with labels only and two feature holders', async (_, algo, params) => {
    const setup = {
      names: ['guest', 'host1', 'host2'],
      blocks: [
        [0, 0],
        [0, 13],
        [13, 23],
      ] as [number, number][],
    }
    const test = head(creditSplit().test, 100)
    const { parts, scores } = await runVertical(algo, setup, train, test, params)
    expect(parts[0].features).toEqual([])
    expect(scores).toHaveLength(100)
    expect(scores.every((v) => v > 0 && v < 1)).toBe(true)
  })

  it('a garbage shape header is a named bad-message error, not a crash', async () => {
    const channels = createMemoryChannels(['guest', 'host'])
    const run = splitNeuralNet.train(context(channels, 'guest', {}), guestData())
    await channels.get('host')?.send('guest', 'job/train/splitnn/shape', Uint8Array.of(0xff, 0x00))
    await expect(run).rejects.toSatisfy(
      (e) => isSyndicateError(e, 'ERR_JOINT_BAD_MESSAGE') && e.message.includes('host'),
    )
  })

  it('split NN: a feature holder refuses a cut gradient of the wrong size', async () => {
    const channels = createMemoryChannels(['guest', 'host'])
    const run = splitNeuralNet.train(context(channels, 'host', { batchSize: 50, hidden: [4] }), hostData())
    const guest = channels.get('guest')
    await guest?.send(
      'host',
      'job/train/splitnn/shape',
      new TextEncoder().encode('{"rows":200,"d":13,"label":true}'),
    )
    await guest?.recv('host', 'job/train/splitnn/e0/b0/z')
    await guest?.send('host', 'job/train/splitnn/e0/b0/delta', new Uint8Array(16))
    await expect(run).rejects.toSatisfy((e) => isSyndicateError(e, 'ERR_JOINT_BAD_MESSAGE'))
  })

  it('scoring refuses a model part for other columns', async () => {
    const channels = createMemoryChannels(['guest', 'host'])
    const part = { algorithm: 'vertical-he-lr', params: { weights: [1, 2], clip: 6 }, features: ['a', 'b'] }
    await expect(
      heLogisticRegression.predict(context(channels, 'host', {}), part, hostData()),
    ).rejects.toSatisfy((e) => isSyndicateError(e, 'ERR_JOINT_DATA'))
  })

  it('a cancelled job stops with ERR_JOB_ABORTED', async () => {
    const channels = createMemoryChannels(['guest', 'host'])
    const ac = new AbortController()
    ac.abort(new Error('user cancelled'))
    const ctx = (self: string) => ({ ...context(channels, self, { epochs: 1 }), signal: ac.signal })
    const runs = [
      heLogisticRegression.train(ctx('guest'), guestData()),
      heLogisticRegression.train(ctx('host'), hostData()),
    ]
    await expectAllReject(runs, 'ERR_JOB_ABORTED')
  })
})
