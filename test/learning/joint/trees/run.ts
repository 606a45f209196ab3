/** Vertical test harness: the bundled hetero data split among a label holder and feature holders. */
import { join } from 'node:path'
import { createMemoryChannels, type PartyChannel } from '../../../../crypto/channel.ts'
import { loadCsv } from '../../../../learning/data/csv.ts'
import { type Dataset, featureMatrix, joinOnId, subset } from '../../../../learning/data/dataset.ts'
import { stratifiedSplitIndices } from '../../../../learning/data/split.ts'
import type {
  JointContext,
  LocalData,
  ModelPart,
  VerticalAlgorithm,
} from '../../../../learning/joint/types.ts'
import { DATA_DIR } from '../../../helpers/data.ts'

export const DATA = DATA_DIR

export interface VerticalSplit {
  /** Party name -> its columns of the training and test rows (the label holder first, with y). */
  train: Map<string, LocalData>
  test: Map<string, LocalData>
  /** Joined (label holder's columns first) training and test matrices for the pooled baseline. */
  joined: { train: LocalData; test: LocalData }
}

function local(ds: Dataset, features: string[], withY: boolean): LocalData {
  return { X: featureMatrix(ds, features), rows: ds.ids.length, features, y: withY ? ds.y : undefined }
}

/**
 * The joined hetero files, 80/20 stratified (seed 42), optionally only the first `rows` rows; the host's
 * columns go to `hosts` feature holders in contiguous groups.
 */
export function verticalSplit(o: { rows?: number; hosts?: number } = {}): VerticalSplit {
  const guest = loadCsv(join(DATA, 'default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
  const host = loadCsv(join(DATA, 'default_credit_hetero_host.csv'), { id: 'id' })
  let joined = joinOnId(guest, host, { prefixes: ['guest_', 'host_'] })
  if (o.rows)
    joined = subset(
      joined,
      Uint32Array.from({ length: o.rows }, (_, i) => i),
    )
  const { train, test } = stratifiedSplitIndices(joined.y!, 0.2, 42)
  const parts = { train: subset(joined, train), test: subset(joined, test) }
  const gFeatures = joined.featureNames.filter((f) => f.startsWith('guest_'))
  const hFeatures = joined.featureNames.filter((f) => f.startsWith('host_'))
  const hosts = o.hosts ?? 1
  const groups: string[][] = Array.from({ length: hosts }, (_, k) =>
    hFeatures.slice(
      Math.round((k * hFeatures.length) / hosts),
      Math.round(((k + 1) * hFeatures.length) / hosts),
    ),
  )
  const side = (ds: Dataset) =>
    new Map<string, LocalData>([
      ['guest', local(ds, gFeatures, true)],
      ...groups.map((g, k): [string, LocalData] => [`host${k + 1}`, local(ds, g, false)]),
    ])
  const all = [...gFeatures, ...hFeatures]
  return {
    train: side(parts.train),
    test: side(parts.test),
    joined: { train: local(parts.train, all, true), test: local(parts.test, all, true) },
  }
}

export function contexts(
  names: string[],
  params: Record<string, unknown>,
  channels: Map<string, PartyChannel> = createMemoryChannels(names),
  prefix = 'job1/',
): Map<string, JointContext> {
  const signal = new AbortController().signal
  return new Map(
    names.map((self) => [
      self,
      {
        channel: channels.get(self)!,
        self,
        labelHolder: names[0],
        tagPrefix: prefix,
        params,
        seed: 7,
        signal,
        progress: () => {},
      },
    ]),
  )
}

/** Trains on every party, then scores `test` jointly; returns the parts and the label holder's scores. */
export async function runVertical(
  alg: VerticalAlgorithm,
  train: Map<string, LocalData>,
  test: Map<string, LocalData>,
  params: Record<string, unknown>,
  channels?: Map<string, PartyChannel>,
): Promise<{ parts: Map<string, ModelPart>; scores: Float64Array }> {
  const names = [...train.keys()]
  const ctx = contexts(names, params, channels)
  const parts = await Promise.all(names.map((n) => alg.train(ctx.get(n)!, train.get(n)!)))
  const partOf = new Map(names.map((n, i) => [n, parts[i]]))
  const pctx = contexts(names, params, channels, 'job1-predict/')
  const scores = await Promise.all(names.map((n) => alg.predict(pctx.get(n)!, partOf.get(n)!, test.get(n)!)))
  return { parts: partOf, scores: scores[0]! }
}

/** Channels that record every payload each party sends. */
export function recorded(names: string[]): {
  channels: Map<string, PartyChannel>
  sent: Map<string, Uint8Array[]>
} {
  const inner = createMemoryChannels(names)
  const sent = new Map(names.map((n) => [n, [] as Uint8Array[]]))
  const channels = new Map<string, PartyChannel>()
  for (const [n, ch] of inner) {
    channels.set(n, {
      ...ch,
      self: ch.self,
      parties: ch.parties,
      send: (to, tag, payload) => {
        sent.get(n)!.push(payload.slice())
        return ch.send(to, tag, payload)
      },
      recv: (from, tag) => ch.recv(from, tag),
      stats: () => ch.stats(),
      close: (r) => ch.close(r),
    })
  }
  return { channels, sent }
}

export function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle)) >= 0
}
