/** Runs a horizontal algorithm on every party at once over in-memory channels (shared by tests and measure.ts). */
import { join } from 'node:path'
import { createMemoryChannels, type PartyChannel } from '../../../../crypto/channel.ts'
import { loadCsv } from '../../../../learning/data/csv.ts'
import { type Dataset, featureMatrix, requireLabels } from '../../../../learning/data/dataset.ts'
import type { HorizontalAlgorithm, LocalData, ModelPart } from '../../../../learning/joint/types.ts'
import { DATA_DIR } from '../../../helpers/data.ts'

export const DATA = DATA_DIR
export const HOMO_PARTIES = ['guest', 'host_1', 'host_2']

export function localData(ds: Dataset): LocalData {
  return {
    X: featureMatrix(ds, ds.featureNames),
    rows: ds.ids.length,
    features: ds.featureNames,
    y: requireLabels(ds),
  }
}

export function loadHomo(name: string): Dataset {
  return loadCsv(join(DATA, `default_credit_homo_${name}.csv`), { id: 'id', label: 'y' })
}

export interface RunOptions {
  params?: Record<string, unknown>
  seed?: number
  aggregator?: string
  channels?: Map<string, PartyChannel>
  signal?: AbortSignal
}

/** train() on every party; settles all (a party's failure is its own result, as on separate nodes). */
export async function runParties(
  alg: HorizontalAlgorithm,
  data: Map<string, LocalData>,
  o: RunOptions = {},
): Promise<Map<string, PromiseSettledResult<ModelPart>>> {
  const names = [...data.keys()]
  const channels = o.channels ?? createMemoryChannels(names)
  const signal = o.signal ?? new AbortController().signal
  const results = await Promise.allSettled(
    names.map((self) =>
      alg.train(
        {
          channel: channels.get(self)!,
          self,
          labelHolder: o.aggregator ?? names[0],
          tagPrefix: 'job1/',
          params: o.params ?? {},
          seed: o.seed ?? 7,
          signal,
          progress: () => {},
        },
        data.get(self)!,
      ),
    ),
  )
  return new Map(names.map((n, i) => [n, results[i]]))
}

export function fulfilled(r: Map<string, PromiseSettledResult<ModelPart>>): Map<string, ModelPart> {
  const out = new Map<string, ModelPart>()
  for (const [n, s] of r) {
    if (s.status === 'rejected') throw s.reason
    out.set(n, s.value)
  }
  return out
}
