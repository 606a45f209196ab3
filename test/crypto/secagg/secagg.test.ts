import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { decodeFixed, encodeFixed } from '../../../crypto/fixed.ts'
import {
  ERR_SECAGG_BAD_MESSAGE,
  ERR_SECAGG_PARAMS,
  ERR_SECAGG_TOO_FEW,
  secAggAggregate,
  secAggClient,
} from '../../../crypto/secagg/index.ts'

const L = 257

function randomVector(): BigUint64Array {
  return new BigUint64Array(randomBytes(8 * L).buffer.slice(0))
}

function plainSum(vs: BigUint64Array[]): BigUint64Array {
  const out = new BigUint64Array(L)
  for (const v of vs) for (let i = 0; i < L; i++) out[i] += v[i]
  return out
}

/** Drops a client at a point of the protocol: its messages under `fromTag` and later are never delivered. */
function dropAt(ch: PartyChannel, fromTag: string): PartyChannel {
  let dropped = false
  return {
    self: ch.self,
    parties: ch.parties,
    send: async (to, tag, p) => {
      if (tag.endsWith(`/${fromTag}`)) dropped = true
      if (!dropped) await ch.send(to, tag, p)
    },
    recv: (f, t) => ch.recv(f, t),
    stats: () => ch.stats(),
    close: (r) => ch.close(r),
  }
}

interface Scenario {
  n: number
  threshold?: number
  /** client index → the step at which it drops ('adv': never shows up; 'masked': drops before its masked input;
   * 'reveal': drops after sending its masked input). */
  drops?: Record<number, 'adv' | 'shares' | 'masked' | 'reveal'>
  spy?: (client: string, tag: string, payload: Uint8Array) => void
}

async function scenario(s: Scenario) {
  const clients = Array.from({ length: s.n }, (_, i) => `c${i}`)
  const chs = createMemoryChannels(['agg', ...clients])
  const inputs = clients.map(() => randomVector())
  const o = {
    session: randomBytes(4).toString('hex'),
    aggregator: 'agg',
    threshold: s.threshold ?? Math.floor(s.n / 2) + 1,
    length: L,
  }
  const running = clients.map((c, i) => {
    let ch = chs.get(c)!
    if (s.spy) {
      const inner = ch
      ch = {
        ...inner,
        send: (to, tag, p) => {
          s.spy!(c, tag, p)
          return inner.send(to, tag, p)
        },
        recv: (f, t) => inner.recv(f, t),
        stats: () => inner.stats(),
        close: (r) => inner.close(r),
      }
    }
    const drop = s.drops?.[i]
    if (drop) ch = dropAt(ch, drop)
    const p = secAggClient(ch, inputs[i], o)
    // A dropped client may wait forever for the next round; it is closed at the end.
    return drop ? p.catch(() => undefined) : p
  })
  const done = secAggAggregate(chs.get('agg')!, { ...o, roundTimeoutMs: 150 })
  const result = await done.finally(() => {
    for (const [i, c] of clients.entries()) if (s.drops?.[i]) chs.get(c)!.close()
  })
  await Promise.all(running.filter((_, i) => !s.drops?.[i]))
  return { result, inputs, clients }
}

describe('secure aggregation (Bonawitz et al.)', () => {
  for (const n of [3, 5, 10, 20]) {
    it(`sums ${n} clients exactly without dropouts`, async () => {
      const { result, inputs, clients } = await scenario({ n })
      expect(result.contributors).toEqual(clients)
      expect(result.sum).toEqual(plainSum(inputs))
    })
  }

  it('recovers the sum of the survivors when clients drop before and after their masked input (n = 10)', async () => {
    // c1 never shows up, c3 drops after sharing keys (before its masked input), c6 drops after sending it.
    const { result, inputs } = await scenario({
      n: 10,
      threshold: 6,
      drops: { 1: 'adv', 3: 'masked', 6: 'reveal' },
    })
    const survivors = [0, 2, 4, 5, 6, 7, 8, 9]
    expect(result.contributors).toEqual(survivors.map((i) => `c${i}`))
    expect(result.sum).toEqual(plainSum(survivors.map((i) => inputs[i])))
  })

  it('tolerates up to n - t dropouts at n = 20 and n = 3', async () => {
    const big = await scenario({
      n: 20,
      threshold: 11,
      drops: { 0: 'masked', 5: 'masked', 7: 'reveal', 11: 'shares', 19: 'reveal' },
    })
    const survivors20 = [...Array(20).keys()].filter((i) => ![0, 5, 11].includes(i))
    expect(big.result.sum).toEqual(plainSum(survivors20.map((i) => big.inputs[i])))
    const small = await scenario({ n: 3, threshold: 2, drops: { 2: 'masked' } })
    expect(small.result.sum).toEqual(plainSum([small.inputs[0], small.inputs[1]]))
  })

  it('fails with the names of the missing clients when fewer than t remain', async () => {
    const err = await scenario({
      n: 5,
      threshold: 3,
      drops: { 0: 'masked', 1: 'masked', 2: 'masked' },
    }).catch((e) => e)
    expect(isSyndicateError(err, ERR_SECAGG_TOO_FEW)).toBe(true)
    expect(err.details.dropped).toEqual(['c0', 'c1', 'c2'])
  })

  it('shows the aggregator masked vectors that look uniform whatever the input', async () => {
    const seen: Record<string, Uint8Array> = {}
    const spy = (c: string, tag: string, p: Uint8Array) => {
      if (tag.endsWith('/masked')) seen[c] = p.slice()
    }
    const { inputs } = await scenario({ n: 4, spy })
    const masked = new BigUint64Array(seen.c0.buffer)
    let equalCount = 0
    for (let i = 0; i < L; i++) if (masked[i] === inputs[0][i]) equalCount++
    expect(equalCount).toBe(0)
    // Run again with an all-zero and an all-ones input: the masked vectors' bits are fair coins either way.
    for (const fill of [0n, 2n ** 64n - 1n]) {
      const clients = ['c0', 'c1', 'c2']
      const chs = createMemoryChannels(['agg', ...clients])
      const o = { session: `u${fill}`, aggregator: 'agg', threshold: 2, length: 4096 }
      let y = new Uint8Array()
      const spied = {
        ...chs.get('c0')!,
        send: (to: string, tag: string, p: Uint8Array) => {
          if (tag.endsWith('/masked')) y = p.slice()
          return chs.get('c0')!.send(to, tag, p)
        },
      }
      await Promise.all([
        secAggAggregate(chs.get('agg')!, o),
        secAggClient(spied as PartyChannel, new BigUint64Array(4096).fill(fill), o),
        secAggClient(chs.get('c1')!, new BigUint64Array(4096), o),
        secAggClient(chs.get('c2')!, new BigUint64Array(4096), o),
      ])
      let ones = 0
      for (const byte of y) for (let b = 0; b < 8; b++) ones += (byte >>> b) & 1
      const bits = y.length * 8
      expect(Math.abs(ones - bits / 2)).toBeLessThan(4 * Math.sqrt(bits / 4))
    }
  })

  it('aggregates fixed-point reals from crypto/fixed.ts', async () => {
    const clients = ['a', 'b', 'c']
    const chs = createMemoryChannels(['agg', ...clients])
    const xs = [
      [0.5, -1.25, 3],
      [1, 2, -3],
      [-0.25, 0.125, 1e3],
    ]
    const o = { session: 'fx', aggregator: 'agg', threshold: 2, length: 3 }
    const [res] = await Promise.all([
      secAggAggregate(chs.get('agg')!, o),
      ...clients.map((c, i) => secAggClient(chs.get(c)!, encodeFixed(xs[i], 16), o)),
    ])
    expect(Array.from(decodeFixed(res.sum, 16))).toEqual([1.25, 0.875, 1000])
  })

  it('rejects bad parameters and malformed client messages', async () => {
    const chs = createMemoryChannels(['agg', 'a', 'b', 'c'])
    const o = { session: 'bad', aggregator: 'agg', threshold: 1, length: 4 }
    await expect(secAggAggregate(chs.get('agg')!, o)).rejects.toSatisfy((e) =>
      isSyndicateError(e, ERR_SECAGG_PARAMS),
    )
    const ok = { ...o, threshold: 2 }
    await expect(secAggClient(chs.get('a')!, new BigUint64Array(3), ok)).rejects.toSatisfy((e) =>
      isSyndicateError(e, ERR_SECAGG_PARAMS),
    )
    await chs.get('b')!.send('agg', 'secagg/bad/adv', new Uint8Array(10))
    const err = await secAggAggregate(chs.get('agg')!, { ...ok, roundTimeoutMs: 50 }).catch((e) => e)
    expect(isSyndicateError(err, ERR_SECAGG_BAD_MESSAGE)).toBe(true)
    expect(err.details.party).toBe('b')
  })

  it('names a client whose masked input has the wrong length, whenever it arrives', async () => {
    const clients = ['c0', 'c1', 'c2']
    const chs = createMemoryChannels(['agg', ...clients])
    const c1 = chs.get('c1')!
    const short: PartyChannel = {
      ...c1,
      send: (to, tag, p) => c1.send(to, tag, tag.endsWith('/masked') ? p.subarray(8) : p),
      recv: (f, t) => c1.recv(f, t),
    }
    const o = { session: 'short', aggregator: 'agg', threshold: 2, length: 8 }
    const running = [
      secAggClient(chs.get('c0')!, new BigUint64Array(8), o),
      secAggClient(short, new BigUint64Array(8), o),
      secAggClient(chs.get('c2')!, new BigUint64Array(8), o),
    ].map((p) => p.catch(() => undefined))
    const err = await secAggAggregate(chs.get('agg')!, { ...o, roundTimeoutMs: 100 }).catch((e) => e)
    for (const c of clients) chs.get(c)!.close()
    await Promise.all(running)
    expect(isSyndicateError(err, ERR_SECAGG_BAD_MESSAGE)).toBe(true)
    expect(err.details.party).toBe('c1')
  })

  it('a client refuses a share box the aggregator tampered with, naming the box sender', async () => {
    const clients = ['c0', 'c1', 'c2']
    const chs = createMemoryChannels(['agg', ...clients])
    const agg = chs.get('agg')!
    const tampering: PartyChannel = {
      ...agg,
      send: (to, tag, p) => {
        const q = p.slice()
        if (to === 'c1' && tag.endsWith('/inbox')) q[20] ^= 1 // inside the first box's ciphertext
        return agg.send(to, tag, q)
      },
      recv: (f, t) => agg.recv(f, t),
      stats: () => agg.stats(),
      close: (r) => agg.close(r),
    }
    const o = { session: 'tamper', aggregator: 'agg', threshold: 2, length: 8 }
    const aggregate = secAggAggregate(tampering, { ...o, roundTimeoutMs: 100 }).catch((e) => e)
    const results = await Promise.all(
      clients.map((c) =>
        secAggClient(chs.get(c)!, new BigUint64Array(8), o).then(
          () => null,
          (e) => e,
        ),
      ),
    )
    expect(results[0]).toBeNull()
    expect(isSyndicateError(results[1], ERR_SECAGG_BAD_MESSAGE)).toBe(true)
    expect(results[1].details.party).toBe('c0')
    await aggregate
  })
})
