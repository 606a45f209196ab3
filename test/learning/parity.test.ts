/**
 * Plaintext baselines against the scikit-learn reference figures in shared/data/README.md. The vertical
 * split is ours (seed 42), not scikit-learn's random_state 42 partition, so the vertical figures carry
 * split-to-split noise of about ±0.01 AUC; the horizontal setting uses the fixed test file and matches tightly.
 */
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadCsv } from '../../learning/data/csv.ts'
import { concatRows, type Dataset, joinOnId } from '../../learning/data/dataset.ts'
import { stratifiedSplit } from '../../learning/data/split.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { scoreDataset, trainModel } from '../../learning/models/train.ts'

const DATA = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/data')
const file = (name: string) => resolve(DATA, name)

function evaluate(kind: 'lr' | 'gbdt' | 'mlp', train: Dataset, test: Dataset): number {
  const model =
    kind === 'lr'
      ? trainModel('lr', train)
      : kind === 'gbdt'
        ? trainModel('gbdt', train)
        : trainModel('mlp', train)
  return auc(test.y!, scoreDataset(model, test))
}

describe('vertical: guest and host joined on id, 80/20 stratified split (seed 42)', () => {
  let guest: Dataset
  let split: { train: Dataset; test: Dataset }
  beforeAll(() => {
    guest = loadCsv(file('default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
    const host = loadCsv(file('default_credit_hetero_host.csv'), { id: 'id' })
    const joined = joinOnId(guest, host, { prefixes: ['guest_', 'host_'] })
    expect(joined.featureNames).toHaveLength(23)
    expect(joined.ids).toHaveLength(30_000)
    split = stratifiedSplit(joined, 42)
  })

  it.each([
    ['lr', 0.714],
    ['gbdt', 0.779],
    ['mlp', 0.762],
  ] as const)('%s within 0.01 AUC of scikit-learn (%s)', (kind, ref) => {
    const a = evaluate(kind, split.train, split.test)
    expect(Math.abs(a - ref)).toBeLessThanOrEqual(0.01)
  })

  it.each([
    ['lr', 0.649],
    ['gbdt', 0.725],
  ] as const)('guest features only: %s no worse than scikit-learn (%s) − 0.01', (kind, ref) => {
    const { train, test } = stratifiedSplit(guest, 42)
    const a = evaluate(kind, train, test)
    expect(a).toBeGreaterThanOrEqual(ref - 0.01)
    expect(a).toBeLessThan(ref + 0.03)
  })
})

describe('horizontal: three institutions pooled, evaluated on default_credit_homo_test', () => {
  let pooled: Dataset
  let test: Dataset
  beforeAll(() => {
    const parts = ['guest', 'host_1', 'host_2'].map((p) =>
      loadCsv(file(`default_credit_homo_${p}.csv`), { id: 'id', label: 'y' }),
    )
    pooled = concatRows(parts)
    test = loadCsv(file('default_credit_homo_test.csv'), { id: 'id', label: 'y' })
    expect(pooled.ids).toHaveLength(24_000)
  })

  it.each([
    ['lr', 0.73],
    ['gbdt', 0.785],
    ['mlp', 0.77],
  ] as const)('%s within 0.01 AUC of scikit-learn (%s)', (kind, ref) => {
    const a = evaluate(kind, pooled, test)
    expect(Math.abs(a - ref)).toBeLessThanOrEqual(0.01)
  })
})
