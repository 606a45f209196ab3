import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { isSyndicateError } from '../../../crypto/errors.ts'
import {
  ERR_SECAGG_BAD_MESSAGE,
  ERR_SECAGG_PARAMS,
  ERR_SECAGG_TOO_FEW,
  KeyedSecAggAggregator,
  KeyedSecAggClient,
} from '../../../crypto/secagg/index.ts'
import { keyPairFromSecret } from '../../../crypto/secagg/keys.ts'
import { bytesToField, type Share, shamirCombine } from '../../../crypto/shamir.ts'

const L = 129

const randomVector = () => new BigUint64Array(randomBytes(8 * L).buffer.slice(0))

function plainSum(vs: BigUint64Array[]): BigUint64Array {
  const out = new BigUint64Array(L)
  for (const v of vs) for (let i = 0; i < L; i++) out[i] += v[i]
  return out
}

async function keyed(
  n: number,
  threshold = Math.floor(n / 2) + 1,
  roundTimeoutMs = 30_000,
  prepareNext?: boolean,
) {
  const clients = Array.from({ length: n }, (_, i) => `c${i}`)
  const chs = createMemoryChannels(['agg', ...clients])
  const o = { session: randomBytes(4).toString('hex'), aggregator: 'agg', threshold, length: L }
  const [agg, ...cs] = await Promise.all([
    KeyedSecAggAggregator.setup(chs.get('agg')!, { ...o, roundTimeoutMs }),
    ...clients.map((c) => KeyedSecAggClient.setup(chs.get(c)!, { ...o, prepareNext })),
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
    interceptSends(chs.get('c0')!, (_, tag, p) => {
      if (tag.endsWith('/masked')) seen.push(p.slice(0, 8 * L))
      return p
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

/** One aggregation of `round` among the clients not in `skip`; resolves with the aggregator's result. */
async function round(
  agg: KeyedSecAggAggregator,
  cs: KeyedSecAggClient[],
  inputs: BigUint64Array[],
  r: number,
  skip: number[] = [],
) {
  const [res] = await Promise.all([
    agg.aggregate(r, inputs[0].length),
    ...cs.map((c, i) => (skip.includes(i) ? undefined : c.aggregate(inputs[i], r))),
  ])
  return res as { sum: BigUint64Array; contributors: string[] }
}

/** Aggregation `r` with every client; the aggregator's result or error, then each client's error (or null). */
function attempt(agg: KeyedSecAggAggregator, cs: KeyedSecAggClient[], r: number) {
  return Promise.all([
    agg.aggregate(r, L).catch((e) => e),
    ...cs.map((c) =>
      c.aggregate(randomVector(), r).then(
        () => null,
        (e) => e,
      ),
    ),
  ])
}

/** From now on, what `ch` sends goes through `edit`: the payload to send instead, or undefined to drop it. */
function interceptSends(
  ch: PartyChannel,
  edit: (to: string, tag: string, p: Uint8Array) => Uint8Array | undefined,
): void {
  const send = ch.send.bind(ch)
  Object.assign(ch, {
    send: (to: string, tag: string, p: Uint8Array) => {
      const q = edit(to, tag, p)
      return q ? send(to, tag, q) : Promise.resolve()
    },
  } satisfies Partial<PartyChannel>)
}

const idle = () => new Promise((r) => setImmediate(r))

describe('keyed secure aggregation: the next round prepared between aggregations', () => {
  it('each client prepares round r + 1 once round r is done, and the prepared rounds sum exactly', async () => {
    const { agg, cs } = await keyed(4)
    expect(cs.map((c) => c.preparedRound)).toEqual([undefined, undefined, undefined, undefined])
    for (const r of [0, 1, 2]) {
      const inputs = cs.map(() => randomVector())
      const res = await round(agg, cs, inputs, r)
      expect(res.sum).toEqual(plainSum(inputs))
      await idle()
      expect(cs.map((c) => c.preparedRound)).toEqual([r + 1, r + 1, r + 1, r + 1])
    }
  })

  it('a round prepared after a dropout leaves the dropped client out', async () => {
    const { agg, cs, clients } = await keyed(5, 3, 300)
    const inputs = cs.map(() => randomVector())
    const r0 = await round(agg, cs, inputs, 0, [2])
    expect(r0.sum).toEqual(plainSum(inputs.filter((_, i) => i !== 2)))
    await idle()
    // the survivors prepared round 1 without c2 (c2 never finished round 0, so it prepared nothing)
    expect(cs.map((c) => c.preparedRound)).toEqual([1, 1, undefined, 1, 1])
    const next = cs.map(() => randomVector())
    const r1 = await round(agg, cs, next, 1, [2])
    expect(r1.sum).toEqual(plainSum(next.filter((_, i) => i !== 2)))
    expect(r1.contributors).toEqual(clients.filter((c) => c !== 'c2'))
    expect(agg.clients).toEqual(clients.filter((c) => c !== 'c2'))
  })

  it('discards a prepared round for another round number, a longer vector or a changed party set', async () => {
    const { agg, cs } = await keyed(4, 3, 30_000, false)
    // prepared for round 1, but round 3 comes: drawn on demand
    for (const c of cs) c.prepare(1, L)
    let inputs = cs.map(() => randomVector())
    expect((await round(agg, cs, inputs, 3)).sum).toEqual(plainSum(inputs))
    expect(cs.map((c) => c.preparedRound)).toEqual([undefined, undefined, undefined, undefined])
    // prepared for a shorter vector than the one that comes
    for (const c of cs) c.prepare(4, 5)
    inputs = cs.map(() => randomVector())
    expect((await round(agg, cs, inputs, 4)).sum).toEqual(plainSum(inputs))
    // prepared for a longer vector: its prefix serves
    for (const c of cs) c.prepare(5, 3 * L)
    inputs = cs.map(() => randomVector())
    expect((await round(agg, cs, inputs, 5)).sum).toEqual(plainSum(inputs))
    // prepared, then the job leaves c3 out: the masks with c3 must not be used
    for (const c of cs) c.prepare(6, L)
    const kept = ['c0', 'c1', 'c2']
    for (const p of [agg, ...cs]) p.restrict(['agg', ...kept])
    inputs = cs.map(() => randomVector())
    const res = await round(agg, cs, inputs, 6, [3])
    expect(res.sum).toEqual(plainSum(inputs.slice(0, 3)))
    expect(res.contributors).toEqual(kept)
  })

  it('prepare refuses a round that is not larger than the last one, and a prepared round is used once', async () => {
    const { agg, cs } = await keyed(3, 2, 30_000, false)
    await round(
      agg,
      cs,
      cs.map(() => randomVector()),
      2,
    )
    expect(() => cs[0].prepare(2, L)).toThrow(expect.objectContaining({ code: ERR_SECAGG_PARAMS }))
    expect(() => cs[0].prepare(3, 0)).toThrow(expect.objectContaining({ code: ERR_SECAGG_PARAMS }))
    cs[0].prepare(3, L)
    await round(
      agg,
      cs,
      cs.map(() => randomVector()),
      3,
    )
    expect(cs[0].preparedRound).toBeUndefined()
    await expect(cs[0].aggregate(randomVector(), 3)).rejects.toSatisfy((e) =>
      isSyndicateError(e, ERR_SECAGG_PARAMS),
    )
  })

  for (const [what, at] of [
    ['a share box', 2 * 4 + 2 + 32 + 12],
    ['the public key a share box is bound to', 2 * 4 + 2],
  ] as const) {
    it(`a client refuses ${what} the aggregator tampered with, naming the box sender`, async () => {
      const { agg, cs, chs } = await keyed(3, 2, 200, false)
      interceptSends(chs.get('agg')!, (to, tag, p) => {
        const q = p.slice()
        // round 0's unmask message to c1: u16 count, 3 u16 clients, then per other survivor u16 sender ‖ its
        // next public key ‖ box (nonce first), c0's first
        if (to === 'c1' && tag.endsWith('/r0/unmask')) q[at] ^= 1
        return q
      })
      const inputs = cs.map(() => randomVector())
      expect((await round(agg, cs, inputs, 0)).sum).toEqual(plainSum(inputs))
      // The box holds c0's shares for the next aggregation: c1 finds out when it draws that one.
      const results = await attempt(agg, cs, 1)
      expect(isSyndicateError(results[2], ERR_SECAGG_BAD_MESSAGE)).toBe(true)
      expect(results[2].details.party).toBe('c0')
    })
  }

  it('after an aggregation that failed once its masked input went out, a client never masks with those keys again', async () => {
    const { agg, cs, chs } = await keyed(3, 2, 200, false)
    interceptSends(chs.get('agg')!, (to, tag, p) =>
      to === 'c1' && tag.endsWith('/r0/unmask') ? p.subarray(1) : p,
    )
    const results = await attempt(agg, cs, 0)
    expect(isSyndicateError(results[2], ERR_SECAGG_BAD_MESSAGE)).toBe(true)
    // Its round-0 mask is out there: a new vector under the same mask would give away the difference.
    await expect(cs[1].aggregate(randomVector(), 1)).rejects.toSatisfy(
      (e) => isSyndicateError(e, ERR_SECAGG_PARAMS) && /new key setup/.test((e as Error).message),
    )
    expect(() => cs[1].prepare(2, L)).toThrow(expect.objectContaining({ code: ERR_SECAGG_PARAMS }))
  })

  it('the aggregator names a client whose masked input has the wrong length', async () => {
    const { agg, cs, chs } = await keyed(3, 2, 200)
    interceptSends(chs.get('c2')!, (_, tag, p) => (tag.endsWith('/masked') ? p.subarray(8) : p))
    const running = cs.map((c) => c.aggregate(randomVector(), 0).catch(() => undefined))
    const err = await agg.aggregate(0, L).catch((e) => e)
    for (const c of ['c0', 'c1', 'c2']) chs.get(c)!.close()
    await Promise.all(running)
    expect(isSyndicateError(err, ERR_SECAGG_BAD_MESSAGE)).toBe(true)
    expect(err.details.party).toBe('c2')
  })
})

describe('keyed secure aggregation: reveals', () => {
  it('the aggregator finishes once threshold reveals are in, without waiting for the others', async () => {
    const { agg, cs, chs } = await keyed(4, 3, 20_000)
    // c3's reveal of round 0 never leaves: its masked input is in the sum all the same
    interceptSends(chs.get('c3')!, (_, tag, p) => (tag.endsWith('/r0/reveal') ? undefined : p))
    const inputs = cs.map(() => randomVector())
    const t0 = performance.now()
    const res = await round(agg, cs, inputs, 0)
    expect(performance.now() - t0).toBeLessThan(5_000)
    expect(res.sum).toEqual(plainSum(inputs))
    expect(res.contributors).toEqual(['c0', 'c1', 'c2', 'c3'])
    // c3 stays in: it sent its masked input (and its keys for the next aggregation)
    const next = cs.map(() => randomVector())
    expect((await round(agg, cs, next, 1)).sum).toEqual(plainSum(next))
  })
})

describe('keyed secure aggregation: what a dropout reveals', () => {
  it('a client dropping in a later aggregation reveals only that aggregation’s mask key, not the one that hid its earlier inputs', async () => {
    const t = 3
    const clients = ['c0', 'c1', 'c2', 'c3']
    const chs = createMemoryChannels(['agg', ...clients])
    const c1 = 2 // channel index of c1 (the aggregator is index 0)
    // The curious aggregator keeps every message it receives, from the key setup on.
    const seen = new Map<string, Uint8Array>()
    const a = chs.get('agg')!
    const recv = a.recv.bind(a)
    Object.assign(a, {
      recv: async (from: string, tag: string) => {
        const m = await recv(from, tag)
        seen.set(`${from} ${tag}`, m)
        return m
      },
    } satisfies Partial<PartyChannel>)
    const o = { session: 'leak', aggregator: 'agg', threshold: t, length: L }
    const [agg, ...cs] = (await Promise.all([
      KeyedSecAggAggregator.setup(a, { ...o, roundTimeoutMs: 200 }),
      ...clients.map((c) => KeyedSecAggClient.setup(chs.get(c)!, { ...o, prepareNext: false })),
    ])) as [KeyedSecAggAggregator, ...KeyedSecAggClient[]]
    const r0 = cs.map(() => randomVector())
    await round(agg, cs, r0, 0)
    await round(
      agg,
      cs,
      cs.map(() => randomVector()),
      1,
      [1],
    )
    // Round 1's reveals hold t shares of c1's mask key (it dropped); rebuild it as the aggregator can.
    const shares: Share[] = []
    for (const c of ['c0', 'c2', 'c3']) {
      const m = seen.get(`${c} secagg/leak/r1/reveal`)!
      for (let off = 0; off < m.length; off += 35) {
        if ((m[off] | (m[off + 1] << 8)) !== c1) continue
        expect(m[off + 2]).toBe(1) // the mask key's share, not the self mask's
        shares.push({
          x: chs.get('agg')!.parties.indexOf(c) + 1,
          y: bytesToField(m.subarray(off + 3, off + 35)),
        })
      }
    }
    expect(shares).toHaveLength(t)
    const rebuilt = keyPairFromSecret(shamirCombine(shares)).pub
    // It is the key c1 announced for aggregation 1 (in its round-0 message, after the masked vector) ...
    const m0 = seen.get('c1 secagg/leak/r0/masked')!
    expect(Buffer.from(rebuilt)).toEqual(Buffer.from(m0.subarray(8 * L, 8 * L + 32)))
    // ... and not the one its round-0 pairwise masks came from (advertised at setup), whose self mask the
    // aggregator did rebuild in round 0: so y0 of c1 stays hidden.
    const adv = seen.get('c1 secagg/leak/setup/adv')!
    expect(Buffer.from(rebuilt)).not.toEqual(Buffer.from(adv.subarray(32, 64)))
  })
})
