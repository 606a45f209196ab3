import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { loadCsv } from '../../../learning/data/csv.ts'
import { featureMatrix } from '../../../learning/data/dataset.ts'
import { predictProba } from '../../../learning/models/predict.ts'
import { trainModel } from '../../../learning/models/train.ts'
import type { GbdtModel, Model } from '../../../learning/models/types.ts'
import { exportOnnx, LABEL_OUTPUT, META_FEATURES, PROBABILITY_OUTPUT } from '../../../learning/onnx/export.ts'
import { readMetadata } from '../../../learning/onnx/graph.ts'
import { fitStandardize } from '../../../learning/preprocess/scale.ts'
import { createRng, DATA_DIR, loadFate, randomGbdt, randomLr, randomMlp } from './fixtures.ts'

const test = loadFate('default_credit_homo_test.csv')
const n = test.ids.length
const d = test.featureNames.length

async function runOnnx(bytes: Uint8Array, X: ArrayLike<number>, cols: number) {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 })
  try {
    const n = X.length / cols
    const out = await session.run({ input: new ort.Tensor('float32', Float32Array.from(X), [n, cols]) })
    return {
      prob: out[PROBABILITY_OUTPUT].data as Float32Array,
      label: out[LABEL_OUTPUT].data as BigInt64Array,
      dims: out[PROBABILITY_OUTPUT].dims,
    }
  } finally {
    await session.release()
  }
}

/** ONNX and the in-process model agree on every row to 1e-5, and the label is probability >= 0.5. */
async function expectSame(model: Model, X: Float64Array) {
  const ref = predictProba(model, X, X.length / model.features.length)
  const { prob, label, dims } = await runOnnx(exportOnnx(model), X, model.features.length)
  expect(dims).toEqual([ref.length, 1])
  let worst = 0
  for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(prob[i] - ref[i]))
  expect(worst).toBeLessThan(1e-5)
  for (let i = 0; i < ref.length; i++) expect(label[i]).toBe(prob[i] >= 0.5 ? 1n : 0n)
  return { worst, ref }
}

/** A copy of X with about `rate` of the cells set to NaN (missing). */
function withMissing(X: Float64Array, rate: number, seed: number): Float64Array {
  const rng = createRng(seed)
  return X.map((v) => (rng.next() < rate ? Number.NaN : v))
}

describe('ONNX export equals the in-process model on default_credit_homo_test (6,000 rows)', () => {
  it('LR with imputation and standardisation, also with missing values', async () => {
    const model = randomLr(test.featureNames, createRng(1))
    await expectSame(model, test.X)
    await expectSame(model, withMissing(test.X, 0.05, 2))
  })

  it('LR without preprocessing', async () => {
    await expectSame(randomLr(test.featureNames, createRng(3), false), test.X)
  })

  it('MLP (23-32-16-1, ReLU) with preprocessing and missing values', async () => {
    const model = randomMlp(test.featureNames, createRng(4))
    await expectSame(model, test.X)
    await expectSame(model, withMissing(test.X, 0.05, 5))
  })

  it('GBDT, 100 trees of depth 5, thresholds at data values, no preprocessing, with missing values', async () => {
    const model = randomGbdt(test, createRng(6), 100, 5)
    await expectSame(model, test.X)
    await expectSame(model, withMissing(test.X, 0.05, 7))
  })

  it('GBDT with standardisation (including negative scales) and imputation folded into thresholds', async () => {
    const stats = fitStandardize(test.X, n, d)
    const scale = stats.scale.map((s, j) => (j % 3 === 0 ? -s : s))
    const impute = stats.mean.map((m, j) => (j % 2 === 0 ? m : m + 1))
    const model = randomGbdt(test, createRng(8), 60, 5, { impute, standardize: { mean: stats.mean, scale } })
    await expectSame(model, test.X)
    await expectSame(model, withMissing(test.X, 0.1, 9))
  })

  it('GBDT on raw UCI features (integer amounts, zeros): standardised thresholds at data values stay exact', async () => {
    const raw = loadCsv(`${DATA_DIR}/UCI_Credit_Card.csv`, { id: 'ID', label: 'default.payment.next.month' })
    const rows = 3000
    const X = featureMatrix(raw, raw.featureNames).subarray(0, rows * raw.featureNames.length)
    const sample = { featureNames: raw.featureNames, X }
    const standardize = fitStandardize(X, rows, raw.featureNames.length)
    await expectSame(randomGbdt(sample, createRng(10), 50, 5, { standardize }), X)
  })
})

describe('ONNX export of models trained by learning/models on the bundled data', () => {
  const train = loadFate('default_credit_homo_guest.csv')

  it('LR, GBDT (100 trees, depth 3) and MLP trained on homo_guest score homo_test identically', async () => {
    const models = [
      trainModel('lr', train),
      trainModel('gbdt', train, { trees: 100, maxDepth: 3 }),
      trainModel('mlp', train, { maxEpochs: 5, seed: 1 }),
    ]
    for (const m of models) await expectSame(m, featureMatrix(test, m.features))
  })
})

describe('float32 boundary', () => {
  const tree = (threshold: number): GbdtModel => ({
    kind: 'gbdt',
    features: ['a'],
    preprocessing: {},
    baseScore: 0,
    trees: [
      {
        feature: [0, -1, -1],
        threshold: [threshold, 0, 0],
        left: [1, 0, 0],
        right: [2, 0, 0],
        missingLeft: [true, false, false],
        value: [0, -2, 2],
      },
    ],
  })

  it('a value exactly at a non-float32 threshold goes left in both', async () => {
    const t = 0.1 // not representable in float32
    const { prob } = await runOnnx(exportOnnx(tree(t)), [t], 1)
    expect(predictProba(tree(t), Float64Array.of(t), 1)[0]).toBeCloseTo(1 / (1 + Math.exp(2)), 12)
    expect(prob[0]).toBeCloseTo(1 / (1 + Math.exp(2)), 6)
  })

  it('documented deviation: a value less than half a float32 ulp above the threshold goes left in ONNX', async () => {
    const t = 0.1
    const x = t + 1e-12 // float64 says right; float32(x) === float32(t) says left
    expect(Math.fround(x)).toBe(Math.fround(t))
    const { prob } = await runOnnx(exportOnnx(tree(t)), [x], 1)
    expect(predictProba(tree(t), Float64Array.of(x), 1)[0]).toBeGreaterThan(0.5)
    expect(prob[0]).toBeLessThan(0.5)
  })
})

describe('export metadata and checks', () => {
  it('carries the feature order in the ONNX metadata', () => {
    const meta = readMetadata(exportOnnx(randomLr(['b', 'a'], createRng(11))))
    expect(JSON.parse(meta[META_FEATURES])).toEqual(['b', 'a'])
  })

  it('rejects malformed model data with ERR_MODEL_SHAPE', () => {
    const bad = { ...randomLr(['a', 'b'], createRng(12)), weights: [1] }
    const cyclic = tree2()
    for (const m of [bad, cyclic]) {
      try {
        exportOnnx(m)
        expect.unreachable()
      } catch (e) {
        expect(isSyndicateError(e, 'ERR_MODEL_SHAPE')).toBe(true)
      }
    }
  })
})

function tree2(): GbdtModel {
  return {
    kind: 'gbdt',
    features: ['a'],
    preprocessing: {},
    baseScore: 0,
    trees: [
      {
        feature: [0, 0],
        threshold: [0, 0],
        left: [1, 0],
        right: [1, 0],
        missingLeft: [true, true],
        value: [0, 0],
      },
    ],
  }
}
