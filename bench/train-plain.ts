/**
 * `npm run bench -- train-plain [--data DIR] [--seed N]`: training time and test AUC of the plaintext
 * baselines (LR by Newton and by SGD, histogram GBDT 100 trees depth 3, MLP (32,16)) on the vertical files
 * joined on id (80/20 stratified split) and on the pooled horizontal files, with scikit-learn's AUC from
 * shared/data/README.md as `reference_auc`.
 */
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadCsv } from '../learning/data/csv.ts'
import { concatRows, type Dataset, joinOnId } from '../learning/data/dataset.ts'
import { stratifiedSplit } from '../learning/data/split.ts'
import { auc } from '../learning/metrics/ranking.ts'
import { scoreDataset, trainModel } from '../learning/models/train.ts'
import type { Model } from '../learning/models/types.ts'
import { emit } from './report.ts'

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}

interface Case {
  name: string
  train: () => Model
  reference?: number
}

function run(setting: string, train: Dataset, test: Dataset, refs: Record<string, number>): void {
  const cases: Case[] = [
    { name: 'lr-newton', train: () => trainModel('lr', train), reference: refs.lr },
    { name: 'lr-sgd', train: () => trainModel('lr', train, { solver: 'sgd' }), reference: refs.lr },
    {
      name: 'gbdt',
      train: () => trainModel('gbdt', train, { trees: 100, maxDepth: 3 }),
      reference: refs.gbdt,
    },
    { name: 'mlp', train: () => trainModel('mlp', train, { hidden: [32, 16] }), reference: refs.mlp },
  ]
  for (const c of cases) {
    const t0 = performance.now()
    const model = c.train()
    const seconds = (performance.now() - t0) / 1000
    emit({
      bench: 'train-plain',
      case: `${setting}/${c.name}`,
      rows: train.ids.length,
      features: train.featureNames.length,
      seconds,
      auc: auc(test.y!, scoreDataset(model, test)),
      reference_auc: c.reference,
    })
  }
}

export default async function (argv: string[]): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url))
  const data = resolve(flag(argv, 'data') ?? resolve(here, '../../shared/data'))
  const seed = Number(flag(argv, 'seed') ?? 42)
  const file = (n: string) => resolve(data, n)

  const t0 = performance.now()
  const guest = loadCsv(file('default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
  const host = loadCsv(file('default_credit_hetero_host.csv'), { id: 'id' })
  const joined = joinOnId(guest, host, { prefixes: ['guest_', 'host_'] })
  emit({
    bench: 'train-plain',
    case: 'load-vertical',
    rows: joined.ids.length,
    seconds: (performance.now() - t0) / 1000,
  })
  const v = stratifiedSplit(joined, seed)
  run('vertical-joined', v.train, v.test, { lr: 0.714, gbdt: 0.779, mlp: 0.762 })

  const pooled = concatRows(
    ['guest', 'host_1', 'host_2'].map((p) =>
      loadCsv(file(`default_credit_homo_${p}.csv`), { id: 'id', label: 'y' }),
    ),
  )
  const test = loadCsv(file('default_credit_homo_test.csv'), { id: 'id', label: 'y' })
  run('horizontal-pooled', pooled, test, { lr: 0.73, gbdt: 0.785, mlp: 0.77 })
}
