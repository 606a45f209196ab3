import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { SyndicateError } from '../errors.ts'

export type WorkerTask =
  | { id: number; op: 'hashMul'; key: Uint8Array; salt: Uint8Array; ids: string[]; outBytes: number }
  | { id: number; op: 'mul' | 'bare'; key: Uint8Array; points: Uint8Array; outBytes: number }

export type WorkerReply =
  | { id: number; out: Uint8Array; ms?: number; cpuMs?: number }
  | { id: number; error: string; index?: number }

type TaskInput = WorkerTask extends infer T ? (T extends WorkerTask ? Omit<T, 'id'> : never) : never

export const ERR_PSI_BAD_POINT = 'ERR_PSI_BAD_POINT'

/** Points per worker task: large enough to amortise messaging, small enough to keep both cores busy. */
const TASK_POINTS = 2048

interface Pending {
  resolve: (r: { out: Uint8Array; ms?: number; cpuMs?: number }) => void
  reject: (e: Error) => void
}

/**
 * A pool of PSI worker threads, one per core. Batches are split into tasks of ~2k points that run on
 * whichever worker is free; results come back in input order. Workers are unref'd while idle so a pool never
 * keeps a process alive.
 */
export class PsiPool {
  readonly size: number
  private readonly workers: Worker[] = []
  private readonly idle: Worker[] = []
  private readonly queue: WorkerTask[] = []
  private readonly pending = new Map<number, Pending>()
  private readonly running = new Map<Worker, number>()
  private nextId = 0

  constructor(size = availableParallelism()) {
    this.size = Math.max(1, size)
  }

  /** X25519(key, H(id)) for every id, `outBytes` bytes of each result. */
  async hashMul(
    key: Uint8Array,
    salt: Uint8Array,
    ids: readonly string[],
    outBytes = 32,
  ): Promise<Uint8Array> {
    const parts: Promise<Uint8Array>[] = []
    for (let i = 0; i < ids.length; i += TASK_POINTS) {
      parts.push(
        this.submit({ op: 'hashMul', key, salt, ids: ids.slice(i, i + TASK_POINTS), outBytes }).then(
          (r) => r.out,
        ),
      )
    }
    return concatSettled(parts, ids.length * outBytes)
  }

  /** X25519(key, u) for every 32-byte u in `points`, `outBytes` bytes of each result. */
  async mul(key: Uint8Array, points: Uint8Array, outBytes = 32): Promise<Uint8Array> {
    const parts: Promise<Uint8Array>[] = []
    const step = TASK_POINTS * 32
    for (let i = 0; i < points.length; i += step) {
      const slice = points.slice(i, i + step)
      parts.push(
        this.submit({ op: 'mul', key, points: slice, outBytes }).then(
          (r) => r.out,
          (e: Error & { index?: number }) => {
            throw e.index === undefined ? e : Object.assign(e, { index: e.index + i / 32 })
          },
        ),
      )
    }
    return concatSettled(parts, (points.length / 32) * outBytes)
  }

  /**
   * Benchmark baseline: the bare multiplications (points imported before the clock starts) on all workers.
   * `seconds` is the summed multiplication time divided by the pool size (the ideal parallel wall time),
   * `cpuSeconds` the CPU time the multiplications took, which machine load does not inflate.
   */
  async bare(key: Uint8Array, points: Uint8Array): Promise<{ seconds: number; cpuSeconds: number }> {
    const step = TASK_POINTS * 32
    const jobs: Promise<{ ms?: number; cpuMs?: number }>[] = []
    for (let i = 0; i < points.length; i += step) {
      jobs.push(this.submit({ op: 'bare', key, points: points.slice(i, i + step), outBytes: 0 }))
    }
    const done = await Promise.all(jobs)
    const sum = (f: (r: { ms?: number; cpuMs?: number }) => number) =>
      done.reduce((a, r) => a + f(r), 0) / 1000
    return { seconds: sum((r) => r.ms ?? 0) / this.size, cpuSeconds: sum((r) => r.cpuMs ?? 0) }
  }

  /** Terminates the workers; pending batches fail. */
  async close(): Promise<void> {
    const err = new SyndicateError('ERR_PSI_POOL_CLOSED', 'the PSI worker pool was closed')
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
    this.queue.length = 0
    await Promise.all(this.workers.map((w) => w.terminate()))
    this.workers.length = 0
    this.idle.length = 0
  }

  private submit(input: TaskInput): Promise<{ out: Uint8Array; ms?: number; cpuMs?: number }> {
    const task = { ...input, id: this.nextId++ } as WorkerTask
    return new Promise((resolve, reject) => {
      this.pending.set(task.id, { resolve, reject })
      this.queue.push(task)
      this.pump()
    })
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let w = this.idle.pop()
      if (!w && this.workers.length < this.size) w = this.spawn()
      if (!w) return
      const task = this.queue.shift()!
      this.running.set(w, task.id)
      w.ref()
      w.postMessage(task)
    }
  }

  private spawn(): Worker {
    // Same extension as this module, so the worker also loads from a tsc build (rewritten to .js).
    const w = new Worker(
      new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url),
    )
    w.on('message', (r: WorkerReply) => {
      this.running.delete(w)
      const p = this.pending.get(r.id)
      this.pending.delete(r.id)
      if ('error' in r) {
        p?.reject(Object.assign(new SyndicateError(ERR_PSI_BAD_POINT, r.error), { index: r.index }))
      } else {
        p?.resolve({ out: r.out, ms: r.ms, cpuMs: r.cpuMs })
      }
      w.unref()
      this.idle.push(w)
      this.pump()
    })
    w.on('error', (e) => {
      // A crashed worker fails its task and is replaced on demand.
      const id = this.running.get(w)
      this.running.delete(w)
      this.workers.splice(this.workers.indexOf(w), 1)
      if (id !== undefined) {
        this.pending.get(id)?.reject(e)
        this.pending.delete(id)
      }
      this.pump()
    })
    this.workers.push(w)
    return w
  }
}

/** Awaits every part (so no rejection goes unhandled) and concatenates them in order. */
async function concatSettled(parts: Promise<Uint8Array>[], total: number): Promise<Uint8Array> {
  const settled = await Promise.allSettled(parts)
  const out = new Uint8Array(total)
  let off = 0
  for (const s of settled) {
    if (s.status === 'rejected') throw s.reason
    out.set(s.value, off)
    off += s.value.length
  }
  return out
}

let shared: PsiPool | undefined

/** The process-wide pool (one worker per core), created on first use. */
export function sharedPsiPool(): PsiPool {
  shared ??= new PsiPool()
  return shared
}
