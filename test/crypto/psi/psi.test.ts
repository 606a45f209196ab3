import { createHash, randomBytes } from 'node:crypto'
import { Field, FpLegendre } from '@noble/curves/abstract/modular.js'
import { afterAll, describe, expect, it } from 'vitest'
import { createMemoryChannels, type PartyChannel } from '../../../crypto/channel.ts'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { ERR_PSI_BAD_MESSAGE, PsiPool, type PsiResult, runPsi } from '../../../crypto/psi/index.ts'

const pool = new PsiPool(2)
afterAll(() => pool.close())

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'))

/** Runs PSI on every party's ids; returns each party's result. */
async function run(
  sets: Record<string, string[]>,
  opts: { receivers?: string[]; leader?: string; chunk?: number; session?: string } = {},
  wrap: (ch: PartyChannel) => PartyChannel = (c) => c,
): Promise<Record<string, PsiResult>> {
  const names = Object.keys(sets)
  const chs = createMemoryChannels(names)
  const session = opts.session ?? randomBytes(6).toString('hex')
  const res = await Promise.all(
    names.map((n) => runPsi(wrap(chs.get(n)!), sets[n], { session, pool, chunk: opts.chunk ?? 64, ...opts })),
  )
  return Object.fromEntries(names.map((n, i) => [n, res[i]]))
}

/** Random ids from a universe of `universe`; every party gets a random subset. */
function randomSets(names: string[], universe: number, p: number): Record<string, string[]> {
  const ids = Array.from({ length: universe }, (_, i) => `cust-${i}-${randomBytes(2).toString('hex')}`)
  return Object.fromEntries(
    names.map((n) => [n, ids.filter(() => Math.random() < p).sort(() => Math.random() - 0.5)]),
  )
}

function plainIntersection(sets: string[][]): Set<string> {
  return new Set(sets[0].filter((x) => sets.every((s) => s.includes(x))))
}

/** Every receiver's rows name the same ids in the same order, and they are exactly the intersection. */
function expectAligned(sets: Record<string, string[]>, res: Record<string, PsiResult>, receivers: string[]) {
  const want = plainIntersection(Object.values(sets))
  const orders = receivers.map((r) => Array.from(res[r].rows!, (i) => sets[r][i]))
  for (const o of orders) {
    expect(o).toEqual(orders[0])
    expect(new Set(o)).toEqual(want)
    expect(o.length).toBe(want.size)
  }
}

describe('X25519 group operation', () => {
  it('matches the RFC 7748 known answer', async () => {
    const k = hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4')
    const u = hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c')
    expect(Buffer.from(await pool.mul(k, u)).toString('hex')).toBe(
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
    )
  })

  it('commutes for u on the curve and on its twist', async () => {
    const a = randomBytes(32)
    const b = randomBytes(32)
    // 9 is the base point (on the curve); 2 is not the u of a curve point (u^3 + Au^2 + u is a non-square),
    // so it lies on the twist.
    const F = Field(2n ** 255n - 19n)
    const rhs = (u: bigint) => F.add(F.add(F.mul(F.sqr(u), u), F.mul(486662n, F.sqr(u))), u)
    expect(FpLegendre(F, rhs(9n))).toBe(1)
    expect(FpLegendre(F, rhs(2n))).toBe(-1)
    const us = new Uint8Array(64)
    us[0] = 9
    us[32] = 2
    const ab = await pool.mul(b, await pool.mul(a, us))
    const ba = await pool.mul(a, await pool.mul(b, us))
    expect(ab).toEqual(ba)
  })

  it('refuses a low-order point', async () => {
    await expect(pool.mul(randomBytes(32), new Uint8Array(32))).rejects.toThrow(/low order/)
  })
})

describe('two-party ECDH PSI', () => {
  it('aligns both parties on exactly the intersection, across chunk boundaries', async () => {
    const sets = randomSets(['a', 'b'], 600, 0.5)
    const res = await run(sets, { chunk: 37 })
    expectAligned(sets, res, ['a', 'b'])
  })

  it('reveals the alignment only to the named receiver', async () => {
    const sets = randomSets(['bank', 'lender'], 200, 0.6)
    const res = await run(sets, { receivers: ['lender'] })
    expect(res.bank.rows).toBeNull()
    expectAligned(sets, res, ['lender'])
  })

  it('matches ids written differently once normalised by the shared schema', async () => {
    const chs = createMemoryChannels(['a', 'b'])
    const normalise = { numeric: true }
    const [ra, rb] = await Promise.all([
      runPsi(chs.get('a')!, [' 00123', '7', '42.0'], { session: 'norm', pool, normalise }),
      runPsi(chs.get('b')!, ['9', '123', '4.2e1'], { session: 'norm', pool, normalise }),
    ])
    expect([...ra.rows!].map((i) => [' 00123', '7', '42.0'][i]).sort()).toEqual([' 00123', '42.0'])
    expect(rb.rows!.length).toBe(2)
  })

  it('handles empty and disjoint sets', async () => {
    expect((await run({ a: [], b: ['x'] })).a.rows).toEqual(new Uint32Array(0))
    expect((await run({ a: ['y'], b: ['x'] })).b.rows).toEqual(new Uint32Array(0))
  })

  it('sends neither ids nor their hashes, and a fresh key makes every run look different', async () => {
    const sets = { a: ['alice-001', 'bob-002', 'carol-003'], b: ['bob-002', 'dave-004'] }
    const sent: Uint8Array[] = []
    const spy = (ch: PartyChannel): PartyChannel => ({
      ...ch,
      send: (to, tag, p) => {
        sent.push(p.slice())
        return ch.send(to, tag, p)
      },
      recv: (f, t) => ch.recv(f, t),
      stats: () => ch.stats(),
      close: (r) => ch.close(r),
    })
    await run(sets, { session: 'traffic' }, spy)
    const firstRun = sent.map((p) => Buffer.from(p).toString('hex'))
    const all = Buffer.concat(sent).toString('latin1')
    for (const id of [...sets.a, ...sets.b]) {
      expect(all.includes(id)).toBe(false)
      // H(id) as docs/psi.md defines it: the point before any secret is applied.
      const h = createHash('sha256').update('syndicate/psi/x25519/v1\0').update('traffic').update(id).digest()
      h[31] &= 0x7f
      expect(all.includes(h.subarray(0, 16).toString('latin1'))).toBe(false)
    }
    // The test's H is the implementation's: k·H computed both ways agrees.
    const k = randomBytes(32)
    const h = createHash('sha256')
      .update('syndicate/psi/x25519/v1\0')
      .update('traffic')
      .update('bob-002')
      .digest()
    h[31] &= 0x7f
    expect(await pool.hashMul(k, new TextEncoder().encode('traffic'), ['bob-002'])).toEqual(
      await pool.mul(k, h),
    )
    sent.length = 0
    await run(sets, {}, spy)
    const secondRun = new Set(sent.map((p) => Buffer.from(p).toString('hex')))
    // Headers (sizes) repeat; no point-carrying message does.
    expect(firstRun.filter((m) => m.length > 16 && secondRun.has(m))).toEqual([])
  })

  it('rejects a malformed peer with its name instead of crashing', async () => {
    const chs = createMemoryChannels(['a', 'evil'])
    const evil = chs.get('evil')!
    const header = new Uint8Array(8)
    new DataView(header.buffer).setUint32(0, 2, true)
    new DataView(header.buffer).setUint32(4, 10, true)
    await evil.send('a', 'psi/bad/e1/n', header)
    await evil.send('a', 'psi/bad/e1/0', new Uint8Array(64)) // two zero (low-order) points
    const err = await runPsi(chs.get('a')!, ['x', 'y'], { session: 'bad', pool }).catch((e) => e)
    expect(isSyndicateError(err, ERR_PSI_BAD_MESSAGE)).toBe(true)
    expect(err.details.party).toBe('evil')

    const chs2 = createMemoryChannels(['a', 'evil'])
    await chs2.get('evil')!.send('a', 'psi/bad2/e1/n', header)
    await chs2.get('evil')!.send('a', 'psi/bad2/e1/0', new Uint8Array(33))
    const err2 = await runPsi(chs2.get('a')!, ['x'], { session: 'bad2', pool }).catch((e) => e)
    expect(isSyndicateError(err2, ERR_PSI_BAD_MESSAGE)).toBe(true)
  })
})

describe('N-party ECDH PSI', () => {
  it('aligns three parties on the three-way intersection', async () => {
    const sets = randomSets(['a', 'b', 'c'], 500, 0.7)
    const res = await run(sets, { chunk: 50 })
    expectAligned(sets, res, ['a', 'b', 'c'])
  })

  it('works with a non-receiving leader and four parties', async () => {
    const sets = randomSets(['p', 'q', 'r', 's'], 300, 0.8)
    const res = await run(sets, { leader: 'q', receivers: ['p', 's'] })
    expect(res.q.rows).toBeNull()
    expect(res.r.rows).toBeNull()
    expectAligned(sets, res, ['p', 's'])
  })
})
