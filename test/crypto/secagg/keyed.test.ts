import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../../crypto/channel.ts'
import { isSyndicateError } from '../../../crypto/errors.ts'
import {
  ERR_SECAGG_PARAMS,
  ERR_SECAGG_TOO_FEW,
  KeyedSecAggAggregator,
  KeyedSecAggClient,
} from '../../../crypto/secagg/index.ts'

const L = 129

const randomVector = () => new BigUint64Array(randomBytes(8 * L).buffer.slice(0))

function plainSum(vs: BigUint64Array[]): BigUint64Array {
  const out = new BigUint64Array(L)
  for (const v of vs) for (let i = 0; i < L; i++) out[i] += v[i]
  return out
}

async function keyed(n: number, threshold = Math.floor(n / 2) + 1, roundTimeoutMs = 30_000) {
  const clients = Array.from({ length: n }, (_, i) => `c${i}`)
  const chs = createMemoryChannels(['agg', ...clients])
  const o = { session: randomBytes(4).toString('hex'), aggregator: 'agg', threshold, length: L }
  const [agg, ...cs] = await Promise.all([
    KeyedSecAggAggregator.setup(chs.get('agg')!, { ...o, roundTimeoutMs }),
    ...clients.map((c) => KeyedSecAggClient.setup(chs.get(c)!, o)),
  ])
  return { clients, agg: agg as KeyedSecAggAggregator, cs: cs as KeyedSecAggClient[], chs }
}

describe('keyed secure aggregation (one key setup, many aggregations)', () => {
  for (const n of [3, 10]) {
    it(`n = ${n}: three aggregations after one setup each give the exact sum`, async () => {
      const { agg, cs } = await keyed(n)
      for (const round of [0, 1, 2]) {
        const inputs = cs.map(() => randomVector())
        const [r] = await Promise.all([
          agg.aggregate(round, L),
          ...cs.map((c, i) => c.aggregate(inputs[i], round)),
        ])
        expect((r as { sum: BigUint64Array }).sum).toEqual(plainSum(inputs))
        expect((r as { contributors: string[] }).contributors).toHaveLength(n)
      }
    })
  }

  it('a client that drops is left out of its aggregation and of every later one; the sums stay exact', async () => {
    const { agg, cs, clients } = await keyed(5, 3, 300)
    const inputs = cs.map(() => randomVector())
    // round 0: c1 never sends its masked input
    const [r0] = await Promise.all([
      agg.aggregate(0, L),
      ...cs.map((c, i) => (i === 1 ? Promise.resolve() : c.aggregate(inputs[i], 0))),
    ])
    const others = inputs.filter((_, i) => i !== 1)
    expect((r0 as { sum: BigUint64Array }).sum).toEqual(plainSum(others))
    expect((r0 as { contributors: string[] }).contributors).toEqual(clients.filter((c) => c !== 'c1'))
    expect(agg.clients).toEqual(clients.filter((c) => c !== 'c1'))
    // round 1 without c1: the survivors' masks no longer involve it
    const next = cs.map(() => randomVector())
    const [r1] = await Promise.all([
      agg.aggregate(1, L),
      ...cs.map((c, i) => (i === 1 ? Promise.resolve() : c.aggregate(next[i], 1))),
    ])
    expect((r1 as { sum: BigUint64Array }).sum).toEqual(plainSum(next.filter((_, i) => i !== 1)))
  })

  it('too few survivors fail the aggregation with the dropped clients named', async () => {
    const { agg, cs } = await keyed(3, 2, 200)
    const run = Promise.all([agg.aggregate(0, L), cs[0].aggregate(randomVector(), 0)])
    await expect(run).rejects.toSatisfy(
      (e) => isSyndicateError(e, ERR_SECAGG_TOO_FEW) && /c1, c2/.test((e as Error).message),
    )
  })

  it('refuses a round number that is not larger than the last one', async () => {
    const { agg, cs } = await keyed(3)
    await Promise.all([agg.aggregate(4, L), ...cs.map((c) => c.aggregate(randomVector(), 4))])
    await expect(agg.aggregate(4, L)).rejects.toSatisfy((e) => isSyndicateError(e, ERR_SECAGG_PARAMS))
    await expect(cs[0].aggregate(randomVector(), 3)).rejects.toSatisfy((e) =>
      isSyndicateError(e, ERR_SECAGG_PARAMS),
    )
  })

  it('the aggregator sees each masked input as uniform bits, whatever the input', async () => {
    const { agg, cs, chs } = await keyed(3)
    const seen: Uint8Array[] = []
    // c0's channel records its masked inputs (what the aggregator receives) from now on
    const c0 = chs.get('c0')!
    const send = c0.send.bind(c0)
    Object.assign(c0, {
      send: (to: string, tag: string, p: Uint8Array) => {
        if (tag.endsWith('/masked')) seen.push(p.slice(0, 8 * L))
        return send(to, tag, p)
      },
    })
    const zeros = new BigUint64Array(L)
    for (const round of [0, 1, 2, 3]) {
      await Promise.all([agg.aggregate(round, L), ...cs.map((c) => c.aggregate(zeros, round))])
    }
    let ones = 0
    for (const m of seen) for (const byte of m) for (let b = 0; b < 8; b++) ones += (byte >> b) & 1
    const bits = seen.length * 8 * 8 * L
    expect(Math.abs(ones / bits - 0.5)).toBeLessThan(0.02)
  })
})
