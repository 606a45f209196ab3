import { describe, expect, it } from 'vitest'
import { splitNeuralNet } from '../../../../learning/joint/vertical/index.ts'
import { auc } from '../../../../learning/metrics/ranking.ts'
import { trainMlp } from '../../../../learning/models/mlp.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import type { MlpModel } from '../../../../learning/models/types.ts'
import { creditSplit, head, runVertical, THREE, TWO } from './helpers.ts'

const { train: fullTrain, test: fullTest } = creditSplit()
const train = head(fullTrain, 3000)
const test = head(fullTest, 1000)
const params = { hidden: [16, 8], maxEpochs: 6, batchSize: 100, learningRate: 3e-3, seed: 4 }

interface Part {
  preprocessing: { standardize: { mean: number[]; scale: number[] } }
  W: number[]
  h1: number
  b1?: number[]
  layers?: { weights: number[][]; bias: number[] }[]
}

/** The pooled MLP the parts form together: W1's column blocks side by side, the label holder's upper layers. */
function pooled(parts: Part[], features: string[]): MlpModel {
  const h1 = parts[0].h1
  const widths = parts.map((p) => p.W.length / h1)
  const W1 = Array.from({ length: h1 }, (_, o) =>
    parts.flatMap((p, i) => p.W.slice(o * widths[i], (o + 1) * widths[i])),
  )
  return {
    kind: 'mlp',
    features,
    preprocessing: {
      standardize: {
        mean: parts.flatMap((p) => p.preprocessing.standardize.mean),
        scale: parts.flatMap((p) => p.preprocessing.standardize.scale),
      },
    },
    layers: [{ weights: W1, bias: parts[0].b1 as number[] }, ...(parts[0].layers ?? [])],
  }
}

describe('split neural network', () => {
  it('two parties: the parts form the pooled MLP architecture and train as well as it', async () => {
    const { parts, scores } = await runVertical(splitNeuralNet, TWO, train, test, params)
    const model = pooled(
      parts.map((p) => p.params as Part),
      train.featureNames,
    )
    const direct = predictProba(model, test.X, test.ids.length)
    let diff = 0
    for (let i = 0; i < direct.length; i++) diff = Math.max(diff, Math.abs(direct[i] - scores[i]))
    expect(diff).toBeLessThan(1e-8)
    expect(parts[1].params).not.toHaveProperty('layers')
    const plain = trainMlp(train.X, train.y as Uint8Array, train.featureNames, params)
    const ref = auc(test.y as Uint8Array, predictProba(plain, test.X, test.ids.length))
    expect(auc(test.y as Uint8Array, scores)).toBeGreaterThan(ref - 0.02)
  }, 30_000)

  it('reproducible mode trains exactly the plaintext MLP (same seed, same steps)', async () => {
    const { scores } = await runVertical(splitNeuralNet, THREE, train, test, {
      ...params,
      reproducible: true,
    })
    const plain = trainMlp(train.X, train.y as Uint8Array, train.featureNames, params)
    const ref = predictProba(plain, test.X, test.ids.length)
    let diff = 0
    for (let i = 0; i < ref.length; i++) diff = Math.max(diff, Math.abs(ref[i] - scores[i]))
    expect(diff).toBeLessThan(1e-6)
  }, 30_000)

  it('three parties', async () => {
    const { parts, scores } = await runVertical(splitNeuralNet, THREE, head(train, 1000), head(test, 300), {
      ...params,
      maxEpochs: 3,
    })
    expect((parts[2].params as Part).W).toHaveLength(16 * 5)
    expect(scores).toHaveLength(300)
    expect(scores.every((s) => s > 0 && s < 1)).toBe(true)
  })
})
