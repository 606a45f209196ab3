import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createMemoryChannels, type PartyChannel } from '../../../../crypto/channel.ts'
import { isSyndicateError } from '../../../../crypto/errors.ts'
import { loadCsv } from '../../../../learning/data/csv.ts'
import { type Dataset, joinOnId, subset } from '../../../../learning/data/dataset.ts'
import { stratifiedSplit } from '../../../../learning/data/split.ts'
import type {
  JointContext,
  LocalData,
  ModelPart,
  VerticalAlgorithm,
} from '../../../../learning/joint/types.ts'

const DATA = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../../shared/data')

let cache: { train: Dataset; test: Dataset } | undefined

/** The vertical credit data joined on id (guest's 13 features, then host's 10), 80/20 stratified (seed 42). */
export function creditSplit(): { train: Dataset; test: Dataset } {
  if (!cache) {
    const guest = loadCsv(resolve(DATA, 'default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
    const host = loadCsv(resolve(DATA, 'default_credit_hetero_host.csv'), { id: 'id' })
    cache = stratifiedSplit(joinOnId(guest, host, { prefixes: ['g_', 'h_'] }), 42)
  }
  return cache
}

/** The first `rows` rows of a dataset. */
export function head(ds: Dataset, rows: number): Dataset {
  return subset(
    ds,
    Uint32Array.from({ length: Math.min(rows, ds.ids.length) }, (_, i) => i),
  )
}

/** Columns [from, to) of a dataset as one party's LocalData (labels only if `label`). */
export function columns(ds: Dataset, from: number, to: number, label: boolean): LocalData {
  const d = ds.featureNames.length
  const n = ds.ids.length
  const w = to - from
  const X = new Float64Array(n * w)
  for (let i = 0; i < n; i++) X.set(ds.X.subarray(i * d + from, i * d + to), i * w)
  return { X, rows: n, features: ds.featureNames.slice(from, to), ...(label ? { y: ds.y } : {}) }
}

export const TWO = {
  names: ['guest', 'host'],
  blocks: [
    [0, 13],
    [13, 23],
  ] as [number, number][],
}
export const THREE = {
  names: ['guest', 'host1', 'host2'],
  blocks: [
    [0, 13],
    [13, 18],
    [18, 23],
  ] as [number, number][],
}

export interface Recorded {
  /** Every payload each party sent, in order. */
  sent: Map<string, Uint8Array[]>
  channels: Map<string, PartyChannel>
}

/** In-memory channels that also record every payload each party sends. */
export function recordingChannels(names: string[]): Recorded {
  const inner = createMemoryChannels(names)
  const sent = new Map(names.map((n) => [n, [] as Uint8Array[]]))
  const channels = new Map<string, PartyChannel>()
  for (const [name, ch] of inner) {
    channels.set(name, {
      self: ch.self,
      parties: ch.parties,
      send: (to, tag, payload) => {
        sent.get(name)?.push(payload.slice())
        return ch.send(to, tag, payload)
      },
      recv: (from, tag) => ch.recv(from, tag),
      stats: () => ch.stats(),
      close: (r) => ch.close(r),
    })
  }
  return { sent, channels }
}

export function context(
  channels: Map<string, PartyChannel>,
  self: string,
  params: Record<string, unknown>,
  tagPrefix = 'job/train',
): JointContext {
  return {
    channel: channels.get(self) as PartyChannel,
    self,
    labelHolder: 'guest',
    tagPrefix,
    params,
    seed: 11,
    signal: new AbortController().signal,
    progress() {},
  }
}

/** Trains `algo` on every party of `setup` over `channels`, then scores `test`; returns parts and the scores. */
export async function runVertical(
  algo: VerticalAlgorithm,
  setup: { names: string[]; blocks: [number, number][] },
  train: Dataset,
  test: Dataset,
  params: Record<string, unknown>,
  channels: Map<string, PartyChannel> = createMemoryChannels(setup.names),
): Promise<{ parts: ModelPart[]; scores: Float64Array }> {
  const parts = await Promise.all(
    setup.names.map((p, i) =>
      algo.train(context(channels, p, params), columns(train, ...setup.blocks[i], i === 0)),
    ),
  )
  const scores = await Promise.all(
    setup.names.map((p, i) =>
      algo.predict(
        context(channels, p, params, 'job/predict'),
        parts[i],
        columns(test, ...setup.blocks[i], false),
      ),
    ),
  )
  for (const s of scores.slice(1)) if (s !== null) throw new Error('only the label holder may get scores')
  return { parts, scores: scores[0] as Float64Array }
}

/** Does `haystack` contain `needle` anywhere? */
export function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).includes(Buffer.from(needle))
}

/** Representations of a raw value a leak could take: float64 and float32 little-endian, decimal text. */
export function encodings(v: number): Uint8Array[] {
  const f64 = new Uint8Array(new Float64Array([v]).buffer)
  const f32 = new Uint8Array(new Float32Array([v]).buffer)
  return [f64, f32, new TextEncoder().encode(String(v))]
}

/** Distinct values of X with many significant digits (so a text or float32 match cannot be chance). */
export function distinctiveValues(X: Float64Array, count: number): number[] {
  const out = new Set<number>()
  for (const v of X) {
    if (String(v).replace(/[-.]/g, '').length >= 10) out.add(v)
    if (out.size >= count) break
  }
  return [...out]
}

/** Waits for every party's run and checks that each failed with a SyndicateError of `code`. */
export async function expectAllReject(runs: Promise<unknown>[], code: string): Promise<void> {
  const settled = await Promise.allSettled(runs)
  for (const r of settled) {
    if (r.status !== 'rejected') throw new Error(`a party finished although ${code} was expected`)
    if (!isSyndicateError(r.reason, code)) throw r.reason
  }
}
