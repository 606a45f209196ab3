import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import type { Logger } from 'pino'
import { canonicalBytes } from '../../crypto/canonical.ts'
import type { PartyChannel } from '../../crypto/channel.ts'
import { SyndicateError } from '../../crypto/errors.ts'
import type { JobKind, JobSpec } from '../../protocol/jobs.ts'

/**
 * Executors: the code a job kind runs once committed, the same on every party. An executor talks to the other
 * parties only through its party channel, stops when `signal` aborts (cancel, deadline), and returns what the
 * governance log records: metrics, an optional model hash, and a result hash all parties agree on.
 */
export interface Progress {
  phase: string
  done?: number
  total?: number
  message?: string
}

export interface ExecutorContext {
  spec: JobSpec
  /** This party's name in the spec. */
  self: string
  channel: PartyChannel
  signal: AbortSignal
  progress(p: Progress): void
  log: Logger
}

export interface ExecutionResult {
  metrics: Record<string, number>
  modelHash?: string
  /** Hash of the agreed outcome; equal on every party for a consistent run. */
  resultHash: string
  /** Anything the API should show (never raw data). */
  summary?: Record<string, unknown>
}

export type Executor = (ctx: ExecutorContext) => Promise<ExecutionResult>

/** Checks a spec of this kind before anyone votes: returns why it cannot run, or undefined. */
export type SpecCheck = (spec: JobSpec) => string | undefined

export class ExecutorRegistry {
  private readonly executors = new Map<JobKind, Executor>()
  private readonly checks = new Map<JobKind, SpecCheck>()

  register(kind: JobKind, executor: Executor, check?: SpecCheck): this {
    this.executors.set(kind, executor)
    if (check) this.checks.set(kind, check)
    return this
  }

  /** Why `spec` cannot run here (no executor, or the kind's own check fails), or undefined. */
  problem(spec: JobSpec): string | undefined {
    if (!this.executors.has(spec.kind)) return `this node has no executor for ${spec.kind} jobs`
    return this.checks.get(spec.kind)?.(spec)
  }

  has(kind: JobKind): boolean {
    return this.executors.has(kind)
  }

  get(kind: JobKind): Executor {
    const e = this.executors.get(kind)
    if (!e) throw new SyndicateError('ERR_NO_EXECUTOR', `this node has no executor for ${kind} jobs`)
    return e
  }

  kinds(): JobKind[] {
    return [...this.executors.keys()]
  }
}

export function hashJson(value: unknown): string {
  return bytesToHex(sha256(canonicalBytes(value)))
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * `noop`: every party greets every other party once per step (params.steps, default 1), optionally pausing
 * params.stepMs between steps. It exercises negotiation, the channel, cancellation and the log end to end.
 */
export const noopExecutor: Executor = async (ctx) => {
  const steps = clampInt(ctx.spec.params.steps, 1, 1, 10_000)
  const stepMs = clampInt(ctx.spec.params.stepMs, 0, 0, 600_000)
  const others = ctx.channel.parties.filter((p) => p !== ctx.self)
  for (let i = 0; i < steps; i++) {
    ctx.signal.throwIfAborted()
    const hello = new TextEncoder().encode(`${ctx.spec.id}:${i}`)
    await Promise.all(others.map((p) => ctx.channel.send(p, `noop/${i}`, hello)))
    const got = await Promise.all(others.map((p) => ctx.channel.recv(p, `noop/${i}`)))
    for (const g of got) {
      if (new TextDecoder().decode(g) !== `${ctx.spec.id}:${i}`)
        throw new SyndicateError('ERR_PROTOCOL_VIOLATION', 'a party echoed the wrong step')
    }
    ctx.progress({ phase: 'greeting', done: i + 1, total: steps })
    if (stepMs > 0 && i + 1 < steps) await sleep(stepMs, ctx.signal)
  }
  return {
    metrics: { steps, parties: ctx.channel.parties.length },
    resultHash: hashJson({ job: ctx.spec.id, steps, parties: [...ctx.channel.parties].sort() }),
  }
}

function clampInt(v: unknown, dflt: number, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) return dflt
  return Math.min(max, Math.max(min, v))
}
