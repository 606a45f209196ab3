import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../../crypto/channel.ts'
import { isSyndicateError } from '../../../../crypto/errors.ts'
import {
  type FeatureHolderModel,
  type LabelHolderModel,
  secureBoost,
} from '../../../../learning/joint/trees/index.ts'
import { GradientKeys } from '../../../../learning/joint/trees/poly.ts'
import { encodeMessage } from '../../../../learning/joint/trees/wire.ts'
import { auc } from '../../../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../../../learning/models/gbdt.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import { contains, contexts, recorded, runVertical, verticalSplit } from './run.ts'

const PARAMS = { trees: 2, maxDepth: 3, learningRate: 0.3, maxBins: 8 }

describe('secureBoost (vertical GBDT over BFV)', () => {
  // 600 aligned customers; the host's 10 columns go to two feature holders (5 each).
  const split = verticalSplit({ rows: 600, hosts: 2 })
  const names = [...split.train.keys()]

  it('grows the trees of the pooled plaintext GBDT, keeps thresholds with their owners and leaks no raw value', async () => {
    const { channels, sent } = recorded(names)
    const { parts, scores } = await runVertical(secureBoost, split.train, split.test, PARAMS, channels)
    const j = split.joined
    const base = trainGbdt(j.train.X, j.train.y!, j.train.features, { ...PARAMS, lambda: 1 })
    const baseScores = predictProba(base, j.test.X, j.test.rows)
    // Same splits as the baseline (fixed-point histograms only perturb near-ties, which this data has none of).
    for (let i = 0; i < scores.length; i++) expect(scores[i]).toBeCloseTo(baseScores[i], 9)
    expect(Math.abs(auc(j.test.y!, scores) - auc(j.test.y!, baseScores))).toBeLessThanOrEqual(0.005)

    const lh = parts.get('guest')!.params as LabelHolderModel
    const remoteRefs = lh.trees.flatMap((t) => t.nodes.filter((n) => 'party' in n && n.party !== 'guest'))
    expect(remoteRefs.length).toBeGreaterThan(0) // the host features matter on this data
    for (const host of ['host1', 'host2']) {
      const fh = parts.get(host)!.params as FeatureHolderModel
      const refs = remoteRefs.filter((n) => 'party' in n && n.party === host)
      for (const r of refs) if ('split' in r) expect(r.split).toBeLessThan(fh.splits.length)
      // The label holder's part names the split, never the feature holder's threshold.
      const lhJson = JSON.stringify(lh)
      for (const s of fh.splits) expect(lhJson).not.toContain(JSON.stringify(s.threshold))
      expect(parts.get(host)!.params).not.toHaveProperty('trees')
    }

    // Privacy: no party's raw feature value (float64 bytes or decimal text) appears in anything it sent.
    for (const [party, data] of split.train) {
      const traffic = Buffer.concat(sent.get(party)!)
      expect(traffic.length).toBeGreaterThan(0)
      const text = traffic.toString('latin1')
      const values = [...new Set(data.X)].filter((v) => String(v).length >= 6).slice(0, 40)
      for (const v of values) {
        expect(contains(traffic, new Uint8Array(Float64Array.of(v).buffer))).toBe(false)
        expect(text.includes(String(v))).toBe(false)
      }
    }
  }, 120_000)

  it('refuses unknown parameters and a malformed command from the label holder', async () => {
    const ctx = contexts(names, { trees: 2, depth: 3 })
    await expect(secureBoost.train(ctx.get('host1')!, split.train.get('host1')!)).rejects.toMatchObject({
      code: 'ERR_JOINT_PARAMS',
    })

    const chans = createMemoryChannels(['guest', 'host1'])
    const fctx = contexts(['guest', 'host1'], {}, chans)
    const keys = await GradientKeys.generate()
    try {
      const lh = chans.get('guest')!
      const run = secureBoost.train(fctx.get('host1')!, split.train.get('host1')!)
      await lh.send('host1', 'job1/sb/keys', keys.bundle)
      await lh.recv('host1', 'job1/sb/hello')
      // A histogram request whose row list points past the data.
      const rows = new Uint32Array([1, 2, 1_000_000])
      await lh.send(
        'host1',
        'job1/sb/c0',
        encodeMessage({ type: 'hist', n: 100, nodes: [3] }, [new Uint8Array(rows.buffer)]),
      )
      const err = await run.catch((e: unknown) => e)
      expect(isSyndicateError(err, 'ERR_JOINT_BAD_MESSAGE')).toBe(true)
    } finally {
      keys.free()
    }
  }, 60_000)

  it('refuses to score with a part made for other columns', async () => {
    const ctx = contexts(names, {})
    const part = { algorithm: 'secureboost', params: { splits: [] }, features: ['x'] }
    await expect(
      secureBoost.predict(ctx.get('host1')!, part, split.test.get('host1')!),
    ).rejects.toMatchObject({
      code: 'ERR_SB_DATA',
    })
  })
})
