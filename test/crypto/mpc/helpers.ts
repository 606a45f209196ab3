import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { DealerSource } from '../../../crypto/mpc/dealer.ts'
import { MpcSession, type Truncation } from '../../../crypto/mpc/session.ts'
import { type CorrelationRequest, RecordingSource } from '../../../crypto/mpc/source.ts'

export interface RunOptions {
  fracBits?: number
  truncation?: Truncation
  /** Dealer party name; default the first party (trusted first party). */
  dealer?: string
  /** Extra channel parties that do not compute; the external dealer among them serves `plan`. */
  helpers?: string[]
  plan?: CorrelationRequest[]
  /** Hide the dealer's boolean correlations, so protocols take their arithmetic-only paths. */
  arithmeticOnly?: boolean
  /** Receives every correlation request the first party makes (its plan). */
  record?: CorrelationRequest[]
}

/** Runs `fn` on every computing party with dealer triples over in-memory channels; returns results in order. */
export async function runParties<T>(
  names: string[],
  fn: (s: MpcSession, self: string) => Promise<T>,
  opts: RunOptions = {},
): Promise<T[]> {
  const helpers = opts.helpers ?? []
  const channels = createMemoryChannels([...names, ...helpers])
  const dealer = opts.dealer ?? names[0]
  const computing = names.map(async (p) => {
    const ch = channels.get(p) as PartyChannel
    const dealt = await DealerSource.create(ch, { dealer, computeParties: names })
    const source = opts.arithmeticOnly
      ? new ArithmeticOnly(dealt)
      : opts.record && p === names[0]
        ? new RecordingSource(dealt, opts.record)
        : dealt
    const s = await MpcSession.create(ch, {
      source,
      parties: names,
      fracBits: opts.fracBits,
      truncation: opts.truncation,
    })
    return fn(s, p)
  })
  const serving = helpers.map(async (p) => {
    const source = await DealerSource.create(channels.get(p) as PartyChannel, {
      dealer,
      computeParties: names,
    })
    if (p === dealer) await source.serve(opts.plan ?? [])
  })
  const [results] = await Promise.all([Promise.all(computing), Promise.all(serving)])
  return results
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

export function plainMatmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n)
  for (let i = 0; i < m; i++)
    for (let l = 0; l < k; l++) for (let j = 0; j < n; j++) out[i * n + j] += a[i * k + l] * b[l * n + j]
  return out
}

/** The real dealer, presented as a source without boolean correlations (as the dealer-free source is). */
class ArithmeticOnly extends RecordingSource {
  override get boolean(): boolean {
    return false
  }
}
