/**
 * Correlated randomness for the online phase (the offline phase): Beaver triples for elementwise and matrix
 * products, shared random bits (comparison) and truncation pairs (n-party truncation). A source hands each
 * party its shares. Two sources exist: `DealerSource` (a named party generates everything; a trust
 * assumption) and `HeTripleSource` (two parties, no one else trusted; homomorphic encryption).
 *
 * Offline and online are separate: `prepare(plan)` generates the correlations for a known sequence of shapes
 * ahead of time (e.g. every matrix product of a training run); the online protocols then take them in the
 * same order. A request that was not prepared is generated on demand, which every party must also do in the
 * same order (all parties run the same program, so they do).
 */
import { SyndicateError } from '../errors.ts'
import type { Ring } from './ring.ts'

export type CorrelationRequest =
  | { kind: 'matmul'; m: number; k: number; n: number }
  | { kind: 'mul'; n: number }
  | { kind: 'bits'; n: number }
  | { kind: 'trunc'; n: number; f: number }
  | { kind: 'and'; n: number }
  | { kind: 'edabit'; n: number }

/** Shares of A (m×k), B (k×n) and C = A·B (m×n); for elementwise triples all three have length n, C = A∘B. */
export interface Triple {
  a: Ring
  b: Ring
  c: Ring
}

/** Shares of a uniform r, of r >> f (logical shift) and of r's top bit, for exact n-party truncation. */
export interface TruncPair {
  r: Ring
  shifted: Ring
  msb: Ring
}

/**
 * For comparison: a uniform r with arithmetic shares and XOR shares of its 64 bits, and a uniform bit b with
 * XOR shares (bit 0) and arithmetic shares (for converting a boolean result back).
 */
export interface EdaBits {
  arith: Ring
  bool: Ring
  bitBool: Ring
  bitArith: Ring
}

export type Correlation = Triple | Ring | TruncPair | EdaBits

export interface CorrelatedSource {
  readonly kind: 'dealer' | 'he'
  /** Offline phase: generates everything `plan` lists, in order, and keeps it for the online phase. */
  prepare(plan: readonly CorrelationRequest[]): Promise<void>
  matmulTriple(m: number, k: number, n: number): Promise<Triple>
  mulTriple(n: number): Promise<Triple>
  /** Shares of n uniform bits (each 0 or 1 in the ring). */
  randomBits(n: number): Promise<Ring>
  truncPair(n: number, f: number): Promise<TruncPair>
  /** True if the source deals boolean correlations (`andTriple`, `edaBits`), which make comparison cheap. */
  readonly boolean: boolean
  /** XOR shares of n AND triples on 64-bit words: c = a & b. */
  andTriple(n: number): Promise<Triple>
  edaBits(n: number): Promise<EdaBits>
  /** How many prepared correlations are still unused. */
  stocked(): number
}

export const ERR_MPC_UNSUPPORTED = 'ERR_MPC_UNSUPPORTED'

export function requestKey(r: CorrelationRequest): string {
  switch (r.kind) {
    case 'matmul':
      return `matmul:${r.m}x${r.k}x${r.n}`
    case 'mul':
    case 'bits':
    case 'and':
    case 'edabit':
      return `${r.kind}:${r.n}`
    case 'trunc':
      return `trunc:${r.n}:${r.f}`
  }
}

export function checkRequest(r: CorrelationRequest): void {
  const dims = r.kind === 'matmul' ? [r.m, r.k, r.n] : [r.n]
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new SyndicateError(
        'ERR_MPC_SHAPE',
        `correlation request ${requestKey(r)} has an invalid dimension`,
      )
    }
  }
}

/**
 * Shared bookkeeping of both sources: prepared correlations queued per request key, taken first-in first-out,
 * and on-demand generation (through `generate`) when the queue for a key is empty.
 */
export abstract class StockedSource implements CorrelatedSource {
  abstract readonly kind: 'dealer' | 'he'
  abstract readonly boolean: boolean
  private readonly stock = new Map<string, Correlation[]>()

  /** `onDemand` is false while preparing a plan and true when an online step found nothing stocked. */
  protected abstract generate(req: CorrelationRequest, onDemand: boolean): Promise<Correlation>

  async prepare(plan: readonly CorrelationRequest[]): Promise<void> {
    for (const req of plan) {
      checkRequest(req)
      this.stockItems([req], [await this.generate(req, false)])
    }
  }

  /** Queues generated correlations for their requests (for sources that generate several at once). */
  protected stockItems(reqs: readonly CorrelationRequest[], items: readonly Correlation[]): void {
    for (const [i, req] of reqs.entries()) {
      const key = requestKey(req)
      const queue = this.stock.get(key)
      if (queue) queue.push(items[i])
      else this.stock.set(key, [items[i]])
    }
  }

  stocked(): number {
    let n = 0
    for (const q of this.stock.values()) n += q.length
    return n
  }

  private async take(req: CorrelationRequest): Promise<Correlation> {
    checkRequest(req)
    const queue = this.stock.get(requestKey(req))
    const item = queue?.shift()
    return item ?? this.generate(req, true)
  }

  async matmulTriple(m: number, k: number, n: number): Promise<Triple> {
    return (await this.take({ kind: 'matmul', m, k, n })) as Triple
  }

  async mulTriple(n: number): Promise<Triple> {
    return (await this.take({ kind: 'mul', n })) as Triple
  }

  async randomBits(n: number): Promise<Ring> {
    return (await this.take({ kind: 'bits', n })) as Ring
  }

  async truncPair(n: number, f: number): Promise<TruncPair> {
    return (await this.take({ kind: 'trunc', n, f })) as TruncPair
  }

  async andTriple(n: number): Promise<Triple> {
    return (await this.take({ kind: 'and', n })) as Triple
  }

  async edaBits(n: number): Promise<EdaBits> {
    return (await this.take({ kind: 'edabit', n })) as EdaBits
  }
}

/**
 * Wraps a source and records every request it serves, in order: run a program once (e.g. the first epoch)
 * to learn its plan, then `prepare(plan)` the next runs' correlations offline in one go.
 */
export class RecordingSource implements CorrelatedSource {
  readonly inner: CorrelatedSource
  readonly plan: CorrelationRequest[]

  /** `plan` (optional) is the array the requests are appended to. */
  constructor(inner: CorrelatedSource, plan: CorrelationRequest[] = []) {
    this.inner = inner
    this.plan = plan
  }

  get kind(): 'dealer' | 'he' {
    return this.inner.kind
  }

  get boolean(): boolean {
    return this.inner.boolean
  }

  prepare(plan: readonly CorrelationRequest[]): Promise<void> {
    return this.inner.prepare(plan)
  }

  stocked(): number {
    return this.inner.stocked()
  }

  matmulTriple(m: number, k: number, n: number): Promise<Triple> {
    this.plan.push({ kind: 'matmul', m, k, n })
    return this.inner.matmulTriple(m, k, n)
  }

  mulTriple(n: number): Promise<Triple> {
    this.plan.push({ kind: 'mul', n })
    return this.inner.mulTriple(n)
  }

  randomBits(n: number): Promise<Ring> {
    this.plan.push({ kind: 'bits', n })
    return this.inner.randomBits(n)
  }

  truncPair(n: number, f: number): Promise<TruncPair> {
    this.plan.push({ kind: 'trunc', n, f })
    return this.inner.truncPair(n, f)
  }

  andTriple(n: number): Promise<Triple> {
    this.plan.push({ kind: 'and', n })
    return this.inner.andTriple(n)
  }

  edaBits(n: number): Promise<EdaBits> {
    this.plan.push({ kind: 'edabit', n })
    return this.inner.edaBits(n)
  }
}
