/** Histogram worker thread (pool.ts): one HistogramEngine on this party's bin codes, nodes by id. */
import { parentPort } from 'node:worker_threads'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { HistogramEngine, type NodeHistograms } from './poly.ts'
import type { PoolReply, PoolRequest } from './pool.ts'

const port = parentPort!
let engine: HistogramEngine | undefined
let bins: Uint8Array = new Uint8Array(0)
let d = 0
/** Nodes under way; a failed `add` (no reply of its own) is reported by the node's next call. */
const nodes = new Map<number, { h?: NodeHistograms; error?: unknown }>()

function reply(r: PoolReply): void {
  port.postMessage(r)
}

function fail(id: number, e: unknown): void {
  const code = isSyndicateError(e) ? e.code : 'ERR_HE_INTERNAL'
  reply({ id, error: e instanceof Error ? e.message : String(e), code })
}

function nodeOf(id: number): NodeHistograms {
  const x = nodes.get(id)
  if (!x) throw new Error(`unknown node ${id}`)
  if (x.error || !x.h) throw x.error
  return x.h
}

async function handle(m: PoolRequest): Promise<void> {
  switch (m.op) {
    case 'init':
      try {
        engine = await HistogramEngine.fromBundle(m.bundle, m.cacheBytes)
        bins = m.bins
        d = m.d
        reply({ id: m.id })
      } catch (e) {
        fail(m.id, e)
      }
      return
    case 'begin':
      try {
        if (!engine) throw new Error('the histogram worker has no keys')
        nodes.set(m.node, { h: engine.begin(m.rows, m.n, m.widths, (f, r) => bins[r * d + f], m.reusable) })
      } catch (e) {
        nodes.set(m.node, { error: e })
      }
      return
    case 'add': {
      const x = nodes.get(m.node)
      if (!x?.h || x.error) return
      try {
        x.h.add(m.chunk, m.index)
      } catch (e) {
        x.error = e
      }
      return
    }
    case 'partials':
      try {
        const h = nodeOf(m.node)
        reply({ id: m.id, added: h.added, parts: h.partials(m.features) })
      } catch (e) {
        fail(m.id, e)
      }
      return
    case 'finish':
      try {
        const h = nodeOf(m.node)
        for (const [f, bytes] of m.merge) h.merge(f, bytes)
        reply({ id: m.id, parts: h.finish(m.features) })
      } catch (e) {
        fail(m.id, e)
      }
      return
    case 'free':
      nodes.get(m.node)?.h?.free()
      nodes.delete(m.node)
      return
  }
}

// Messages are handled strictly in order (init is asynchronous).
let queue = Promise.resolve()
port.on('message', (m: PoolRequest) => {
  queue = queue.then(() => handle(m))
})
