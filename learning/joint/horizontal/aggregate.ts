/**
 * The communication layer of horizontal training: a secure sum of one real vector per party (Bonawitz secure
 * aggregation over fixed-point vectors, crypto/secagg) with the aggregator (ctx.labelHolder) as the server,
 * and the aggregator's broadcasts of public results (global models, moments, the set of active parties).
 * The keys are set up once per training run, on the first secure sum (crypto/secagg/keyed.ts): every later sum
 * takes two round trips instead of four; a client whose key the aggregator had to rebuild after a dropout
 * stays out of the rest of the run.
 *
 * The aggregator also holds data: it is the secagg server, not a secagg client, so its own vector is added to
 * the unmasked sum in the ring locally (it learns its own vector anyway). Everything runs on a scoped view of
 * the job channel: tags carry the job's prefix, and `parties` is the set of parties still active, so a party
 * that dropped in an earlier round is not waited for again.
 */
import { channelClosedError, type PartyChannel } from '../../../crypto/channel.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import { decodeFixed, encodeFixed } from '../../../crypto/fixed.ts'
import { ringAdd } from '../../../crypto/mpc/ring.ts'
import { KeyedSecAggAggregator, KeyedSecAggClient } from '../../../crypto/secagg/index.ts'

export const ERR_HFL_BAD_MESSAGE = 'ERR_HFL_BAD_MESSAGE'
export const ERR_HFL_DROPPED = 'ERR_HFL_DROPPED'

/** The job channel with prefixed tags and a restricted, agreed party list (same order on every party). */
export function scopedChannel(ch: PartyChannel, prefix: string, parties: readonly string[]): PartyChannel {
  return {
    self: ch.self,
    parties: [...parties],
    send: (to, tag, payload) => ch.send(to, prefix + tag, payload),
    recv: (from, tag) => ch.recv(from, prefix + tag),
    stats: () => ch.stats(),
    close: (reason) => ch.close(reason),
  }
}

export interface Aggregation {
  /** The job channel (unscoped). */
  channel: PartyChannel
  self: string
  aggregator: string
  tagPrefix: string
  /** Parties still taking part, in the job's order (the aggregator first or wherever it is). */
  active: string[]
  /** Fractional bits of the fixed-point encoding of summed vectors. */
  fracBits: number
  /** Secagg threshold rule: the smallest legal threshold (> clients/2) unless set. */
  threshold?: number
  roundTimeoutMs: number
  signal: AbortSignal
  /** The run's keyed secure-aggregation session, set up by the first secure sum. */
  keyed?: KeyedSession
}

interface KeyedSession {
  party: KeyedSecAggClient | KeyedSecAggAggregator
  round: number
}

function clientsOf(a: Aggregation): string[] {
  return a.active.filter((p) => p !== a.aggregator)
}

function thresholdOf(a: Aggregation): number {
  const c = clientsOf(a).length
  return Math.min(c, Math.max(a.threshold ?? 0, Math.floor(c / 2) + 1))
}

/**
 * Σ over the active parties of `values` (same length everywhere). The aggregator gets the sum and the parties
 * whose vectors it contains (clients that dropped during the aggregation are left out); clients get null.
 * Precision: each party's vector is rounded to a multiple of 2^-fracBits, so the sum is off by at most
 * parties · 2^-(fracBits+1) per coordinate.
 */
export async function secureSum(
  a: Aggregation,
  values: Float64Array,
): Promise<{ sum: Float64Array; contributors: string[] } | null> {
  a.signal.throwIfAborted()
  const encoded = encodeFixed(values, a.fracBits)
  if (clientsOf(a).length === 0) return { sum: decodeFixed(encoded, a.fracBits), contributors: [a.self] }
  if (!a.keyed) {
    // One key setup per run, bound to the parties active now (tags under the run's prefix).
    const ch = scopedChannel(a.channel, a.tagPrefix, a.active)
    const o = { session: 'keyed', aggregator: a.aggregator, threshold: thresholdOf(a), length: 1 }
    const party =
      a.self === a.aggregator
        ? await KeyedSecAggAggregator.setup(ch, { ...o, roundTimeoutMs: a.roundTimeoutMs })
        : await KeyedSecAggClient.setup(ch, o)
    a.keyed = { party, round: 0 }
  }
  // Parties the run dropped (unreachable for a broadcast) leave the session's masks too, alike everywhere.
  a.keyed.party.restrict(a.active)
  const round = a.keyed.round++
  if (a.keyed.party instanceof KeyedSecAggClient) {
    await a.keyed.party.aggregate(encoded, round)
    return null
  }
  const r = await a.keyed.party.aggregate(round, values.length)
  return { sum: decodeFixed(ringAdd(r.sum, encoded), a.fracBits), contributors: [a.self, ...r.contributors] }
}

/**
 * Aggregator → every active client: one public message. A client that cannot be reached is reported back as
 * dropped (the caller removes it from `active`), never as a failure of the whole job.
 */
export async function broadcast(a: Aggregation, tag: string, payload: Uint8Array): Promise<string[]> {
  const ch = scopedChannel(a.channel, a.tagPrefix, a.active)
  const dropped: string[] = []
  await Promise.all(
    clientsOf(a).map((p) =>
      ch.send(p, tag, payload).catch(() => {
        dropped.push(p)
      }),
    ),
  )
  return dropped
}

/** Client side of `broadcast`: waits for the aggregator's message, failing if the job is aborted. */
export async function receiveBroadcast(a: Aggregation, tag: string): Promise<Uint8Array> {
  a.signal.throwIfAborted()
  const ch = scopedChannel(a.channel, a.tagPrefix, a.active)
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(channelClosedError(a.self, a.signal.reason as Error))
    a.signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([ch.recv(a.aggregator, tag), aborted])
  } finally {
    a.signal.removeEventListener('abort', onAbort!)
  }
}

/** A public message: a JSON header and a vector of doubles, `u32 headerLength | header | f64[]`. */
export function encodeMessage(header: unknown, vector: Float64Array = new Float64Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header))
  const pad = (8 - ((4 + h.length) % 8)) % 8
  const out = new Uint8Array(4 + h.length + pad + vector.byteLength)
  new DataView(out.buffer).setUint32(0, h.length, true)
  out.set(h, 4)
  out.set(new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength), 4 + h.length + pad)
  return out
}

/** Parses `encodeMessage` output from `from`, checking the vector length and that every number is finite. */
export function decodeMessage(
  from: string,
  msg: Uint8Array,
  vectorLength: number,
): { header: Record<string, unknown>; vector: Float64Array } {
  const bad = (what: string) =>
    new SyndicateError(
      ERR_HFL_BAD_MESSAGE,
      `horizontal training: ${from} sent a malformed message (${what}); abort the job and check that party`,
      { party: from },
    )
  if (msg.length < 4) throw bad('too short')
  const hl = new DataView(msg.buffer, msg.byteOffset, msg.byteLength).getUint32(0, true)
  const pad = (8 - ((4 + hl) % 8)) % 8
  const start = 4 + hl + pad
  if (start > msg.length || msg.length - start !== 8 * vectorLength) throw bad('length')
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.subarray(4, 4 + hl)))
  } catch {
    throw bad('header is not JSON')
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header')
  const vector = new Float64Array(msg.slice(start).buffer)
  if (!vector.every(Number.isFinite)) throw bad('non-finite number')
  return { header: header as Record<string, unknown>, vector }
}

/**
 * Aggregator: publishes a result to every client that was active, with the parties that stay active (the
 * contributors of the last secure sum minus unreachable clients); returns and records the new active list.
 */
export async function publish(
  a: Aggregation,
  tag: string,
  contributors: readonly string[],
  header: Record<string, unknown>,
  vector?: Float64Array,
): Promise<void> {
  const next = a.active.filter((p) => contributors.includes(p))
  const dropped = await broadcast(a, tag, encodeMessage({ ...header, active: next }, vector))
  a.active = next.filter((p) => !dropped.includes(p))
}

/** Client: receives a `publish`ed result and the new active list; a client left out stops (ERR_HFL_DROPPED). */
export async function receivePublished(
  a: Aggregation,
  tag: string,
  vectorLength: number,
): Promise<{ header: Record<string, unknown>; vector: Float64Array }> {
  const m = decodeMessage(a.aggregator, await receiveBroadcast(a, tag), vectorLength)
  const list = m.header.active
  if (
    !Array.isArray(list) ||
    !list.every((p) => typeof p === 'string' && a.active.includes(p)) ||
    new Set(list).size !== list.length ||
    !list.includes(a.aggregator)
  ) {
    throw new SyndicateError(
      ERR_HFL_BAD_MESSAGE,
      `horizontal training: ${a.aggregator} sent a bad party list`,
      {
        party: a.aggregator,
      },
    )
  }
  if (!list.includes(a.self)) {
    throw new SyndicateError(
      ERR_HFL_DROPPED,
      `${a.self} was dropped from the horizontal training job (it missed a secure aggregation round); the others continue without it`,
      { party: a.self },
    )
  }
  a.active = a.active.filter((p) => list.includes(p))
  return m
}
