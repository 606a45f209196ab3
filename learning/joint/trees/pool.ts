/**
 * A feature holder's histogram engines on worker threads (pool-worker.ts). Chunk c of a node goes to worker
 * c mod size, which multiplies it into its own running sums; at the end each feature's partial sums are merged
 * into one worker (feature f: worker f mod size), which masks and serialises the reply. The products dominate
 * SecureBoost's cost and are independent per chunk, so they spread over the cores; nothing but this party's own
 * bin codes, the label holder's ciphertexts and partial sums of them crosses a thread boundary.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { SyndicateError } from '../../../crypto/errors.ts'

export type PoolRequest =
  | { op: 'init'; id: number; bundle: Uint8Array; bins: Uint8Array; d: number; cacheBytes: number }
  | { op: 'begin'; node: number; rows: Uint32Array; n: number; widths: number[]; reusable: boolean }
  | { op: 'add'; node: number; index: number; chunk: Uint8Array }
  | { op: 'partials'; id: number; node: number; features: number[] }
  | { op: 'finish'; id: number; node: number; features: number[]; merge: [number, Uint8Array][] }
  | { op: 'free'; node: number }

export type PoolReply =
  | { id: number; added?: number; parts?: (Uint8Array | null)[] }
  | { id: number; error: string; code: string }

/** Cached root plaintexts of one party, split over its workers (see poly.ts). */
const CACHE_BYTES = 512 * 1024 * 1024

interface Pending {
  resolve: (r: { added?: number; parts?: (Uint8Array | null)[] }) => void
  reject: (e: Error) => void
}

/** One node's histograms spread over the pool: `add` every chunk (any order), then `finish`. */
export interface PooledNode {
  add(chunk: Uint8Array, index: number): void
  finish(): Promise<Uint8Array[]>
  free(): void
}

export class HistogramPool {
  readonly size: number
  readonly #workers: Worker[]
  readonly #pending = new Map<number, Pending>()
  #nextId = 0
  #nextNode = 0
  #failure: Error | undefined

  private constructor(workers: Worker[]) {
    this.size = workers.length
    this.#workers = workers
    for (const w of workers) {
      w.on('message', (r: PoolReply) => {
        const p = this.#pending.get(r.id)
        this.#pending.delete(r.id)
        if ('error' in r) p?.reject(new SyndicateError(r.code, r.error, {}))
        else p?.resolve(r)
      })
      w.on('error', (e) => this.#fail(e))
      w.on('exit', (code) => {
        if (code !== 0) this.#fail(new Error(`histogram worker exited with code ${code}`))
      })
    }
  }

  /**
   * Starts `size` workers (default: one per core, at most two) on the label holder's public bundle and this
   * party's bin codes (`rows × d`, row-major). Fails like `HistogramEngine.fromBundle` on a bad bundle.
   */
  static async start(
    bundle: Uint8Array,
    bins: Uint8Array,
    d: number,
    size = Math.min(2, availableParallelism()),
  ): Promise<HistogramPool> {
    // Same extension as this module, so the worker also loads from a tsc build (rewritten to .js).
    const url = new URL(
      import.meta.url.endsWith('.ts') ? './pool-worker.ts' : './pool-worker.js',
      import.meta.url,
    )
    const pool = new HistogramPool(Array.from({ length: Math.max(1, size) }, () => new Worker(url)))
    try {
      const cacheBytes = Math.floor(CACHE_BYTES / pool.size)
      await Promise.all(
        pool.#workers.map((_, w) => pool.#call(w, (id) => ({ op: 'init', id, bundle, bins, d, cacheBytes }))),
      )
      return pool
    } catch (e) {
      await pool.close()
      throw e
    }
  }

  node(rows: Uint32Array, n: number, widths: readonly number[], reusable: boolean): PooledNode {
    this.#check()
    const node = this.#nextNode++
    const chunks = Math.ceil(rows.length / n)
    for (const w of this.#workers) {
      w.postMessage({ op: 'begin', node, rows, n, widths: [...widths], reusable } satisfies PoolRequest)
    }
    let freed = false
    const owner = (f: number) => f % this.size
    return {
      add: (chunk, index) => {
        this.#check()
        // A copy of just this chunk (it is a view into a larger message), moved to the worker without cloning.
        const own = chunk.slice()
        this.#workers[index % this.size].postMessage(
          { op: 'add', node, index, chunk: own } satisfies PoolRequest,
          [own.buffer],
        )
      },
      finish: async () => {
        // Each worker hands over its partial sums of the features others finish, then finishes its own.
        const features = widths.map((_, f) => f)
        const handed = await Promise.all(
          this.#workers.map((_, w) =>
            this.#call(w, (id) => ({
              op: 'partials',
              id,
              node,
              features: features.filter((f) => owner(f) !== w),
            })),
          ),
        )
        const added = handed.reduce((s, r) => s + (r.added ?? 0), 0)
        if (added !== chunks) {
          throw new SyndicateError(
            'ERR_HE_BAD_INPUT',
            `a histogram needs all ${chunks} chunks, got ${added}`,
            {},
          )
        }
        const done = await Promise.all(
          this.#workers.map((_, w) => {
            const merge: [number, Uint8Array][] = []
            handed.forEach((r, from) => {
              const mine = features.filter((f) => owner(f) !== from)
              mine.forEach((f, k) => {
                const part = r.parts?.[k]
                if (owner(f) === w && part) merge.push([f, part])
              })
            })
            return this.#call(w, (id) => ({
              op: 'finish',
              id,
              node,
              features: features.filter((f) => owner(f) === w),
              merge,
            }))
          }),
        )
        return features.map((f) => {
          const mine = features.filter((g) => owner(g) === owner(f))
          const part = done[owner(f)].parts?.[mine.indexOf(f)]
          if (!part) throw new SyndicateError('ERR_HE_INTERNAL', 'a histogram worker returned no reply', {})
          return part
        })
      },
      free: () => {
        if (freed) return
        freed = true
        for (const w of this.#workers) w.postMessage({ op: 'free', node } satisfies PoolRequest)
      },
    }
  }

  async close(): Promise<void> {
    const err = new SyndicateError('ERR_SB_POOL_CLOSED', 'the histogram worker pool was closed', {})
    for (const p of this.#pending.values()) p.reject(err)
    this.#pending.clear()
    await Promise.all(this.#workers.map((w) => w.terminate()))
  }

  #call(
    w: number,
    req: (id: number) => PoolRequest,
  ): Promise<{ added?: number; parts?: (Uint8Array | null)[] }> {
    this.#check()
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#workers[w].postMessage(req(id))
    })
  }

  #fail(e: Error): void {
    this.#failure ??= e
    for (const p of this.#pending.values()) p.reject(e)
    this.#pending.clear()
  }

  #check(): void {
    if (this.#failure) throw this.#failure
  }
}
