import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimConsortium, startConsortium } from '../../sim/consortium.ts'
import { dataFile } from '../helpers/data.ts'
import { api, waitForJob } from '../helpers/jobs.ts'

let sim: SimConsortium
let psiJobId = ''
const scratch = mkdtempSync(join(tmpdir(), 'syndicate-psi-'))
const node = (i: number) => sim.nodes[i].node
const token = (i: number) => sim.nodes[i].token

beforeAll(async () => {
  sim = await startConsortium({ names: ['bank-a', 'lender-b'] })
  for (let i = 0; i < 2; i++)
    expect(
      (await api(node(i), token(i), 'PUT', '/v1/policy', { approval: 'auto', datasets: { '*': {} } })).status,
    ).toBe(200)
  // lender-b knows only every third customer of bank-a, plus 500 of its own.
  const lines = ['id,x0,x1']
  for (let i = 3; i <= 30000; i += 3) lines.push(`${i},${(i % 7) / 7},${(i % 11) / 11}`)
  for (let i = 0; i < 500; i++) lines.push(`other-${i},0.5,0.5`)
  writeFileSync(join(scratch, 'partner.csv'), `${lines.join('\n')}\n`)
  writeFileSync(join(scratch, 'disjoint.csv'), 'id,x0\nzz-1,1\nzz-2,2\n')
  const reg = async (i: number, name: string, file: string, label?: string) => {
    const r = await api(node(i), token(i), 'POST', '/v1/datasets', {
      name,
      file,
      id: 'id',
      ...(label ? { label } : {}),
    })
    expect(r.status, JSON.stringify(r.body)).toBe(201)
  }
  await reg(0, 'guest', dataFile('default_credit_hetero_guest.csv'), 'y')
  await reg(1, 'partner', join(scratch, 'partner.csv'))
  await reg(1, 'disjoint', join(scratch, 'disjoint.csv'))
})
afterAll(async () => {
  await sim?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

function psiJob(partnerDataset: string, extra: Record<string, unknown> = {}) {
  return {
    kind: 'psi',
    parties: [
      { name: 'bank-a', roles: ['label-holder'], dataset: 'guest' },
      { name: 'lender-b', roles: ['feature-holder'], dataset: partnerDataset, ...extra },
    ],
    outputs: [{ what: 'intersection-size', to: ['bank-a', 'lender-b'] }],
  }
}

/** A quick SS-LR job (2 epochs, dealer triples) on guest × partner, optionally on a psi job's alignment. */
function trainJob(alignment?: string, partnerDataset = 'partner') {
  return {
    kind: 'train',
    mode: 'mpc',
    algorithm: 'vertical-ss-lr',
    parties: [
      { name: 'bank-a', roles: ['label-holder'], dataset: 'guest' },
      { name: 'lender-b', roles: ['feature-holder'], dataset: partnerDataset },
    ],
    params: {
      seed: 5,
      compareAlone: true,
      ...(alignment ? { alignment } : {}),
      algorithm: { triples: 'dealer', dealer: 'bank-a', epochs: 2 },
    },
    outputs: [{ what: 'metrics', to: ['bank-a', 'lender-b'] }],
  }
}

type Split = { ids: string[]; test: number[] }
const stored = (i: number, id: string) => node(i).store.sub<Split>('alignments').get(id)

describe('PSI as a job between two real nodes', () => {
  it('a bad dataset file is refused at registration with the row and column, and nothing is stored', async () => {
    writeFileSync(join(scratch, 'dup.csv'), 'id,x0\n1,0.5\n2,abc\n')
    const r = await api(node(1), token(1), 'POST', '/v1/datasets', {
      name: 'dup',
      file: join(scratch, 'dup.csv'),
      id: 'id',
    })
    expect(r.status).toBe(400)
    expect(r.body.error?.message).toMatch(/line 3/)
    expect(r.body.error?.message).toMatch(/x0/)
    expect((await api(node(1), token(1), 'GET', '/v1/datasets/dup')).status).toBe(404)
  })

  it('aligns the customers both hold; both parties record the same intersection size', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', psiJob('partner'))
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    const id = (r.body.spec as { id: string }).id
    psiJobId = id
    const views = await Promise.all([0, 1].map((i) => waitForJob(node(i), id, ['succeeded'], 60_000)))
    expect(views.map((v) => v.result?.metrics.intersection)).toEqual([10000, 10000])
    expect(views[0].result?.resultHash).toBe(views[1].result?.resultHash)
    // Both sides hold the same ids in the same order.
    const a = (await node(0).store.sub<{ ids: string[] }>('alignments').get(id))!.ids
    const b = (await node(1).store.sub<{ ids: string[] }>('alignments').get(id))!.ids
    expect(a).toEqual(b)
    expect(a.every((x) => Number(x) % 3 === 0)).toBe(true)
  })

  it('an empty intersection fails the job with the reason on both sides', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', psiJob('disjoint'))
    const id = (r.body.spec as { id: string }).id
    const views = await Promise.all([0, 1].map((i) => waitForJob(node(i), id, ['failed'], 60_000)))
    expect(views.some((v) => /no customers in common/.test(v.reason ?? ''))).toBe(true)
  })

  it('a dataset missing a column the spec names fails the job, naming the column', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', psiJob('partner', { columns: ['x0', 'x9'] }))
    const id = (r.body.spec as { id: string }).id
    const views = await Promise.all([0, 1].map((i) => waitForJob(node(i), id, ['failed'], 60_000)))
    expect(views.some((v) => /lacks column\(s\) x9/.test(v.reason ?? ''))).toBe(true)
    // The node keeps working: a later job still succeeds.
    const ok = await api(node(1), token(1), 'POST', '/v1/jobs', psiJob('partner'))
    await waitForJob(node(0), (ok.body.spec as { id: string }).id, ['succeeded'], 60_000)
  })
  it('a train job reuses the psi job alignment instead of running PSI, with the same rows and metrics', async () => {
    const run = async (alignment?: string) => {
      const r = await api(node(0), token(0), 'POST', '/v1/jobs', trainJob(alignment))
      expect(r.status, JSON.stringify(r.body)).toBe(201)
      const id = (r.body.spec as { id: string }).id
      const views = await Promise.all(
        [0, 1].map((i) => waitForJob(node(i), id, ['succeeded', 'failed'], 120_000)),
      )
      for (const v of views) expect(v.state, v.reason).toBe('succeeded')
      return { id, metrics: views[0].result!.metrics, summary: views[0].result!.summary! }
    }
    const reused = await run(psiJobId)
    const own = await run()
    const psiIds = (await stored(0, psiJobId))!.ids
    // Both parties trained on exactly the psi job's rows, in its order: no PSI ran (a PSI run orders the
    // intersection by that run's keys, as the job with its own PSI shows).
    for (const i of [0, 1]) expect((await stored(i, reused.id))!.ids).toEqual(psiIds)
    const ownSplit = (await stored(0, own.id))!
    expect(ownSplit.ids).not.toEqual(psiIds)
    expect([...ownSplit.ids].sort()).toEqual([...psiIds].sort())
    // The split is drawn over the label holder's file order: the same test customers either way.
    const testIds = (s: Split) => s.test.map((k) => s.ids[k]).sort()
    expect(testIds((await stored(0, reused.id))!)).toEqual(testIds(ownSplit))
    for (const k of ['rows_aligned', 'rows_train', 'rows_test', 'auc_label_holder_alone'])
      expect(reused.metrics[k], k).toBeCloseTo(own.metrics[k], 9)
    // Only the batch order differs (SGD over the aligned order), hence close, not equal, joint AUCs.
    expect(Math.abs(reused.metrics.auc - own.metrics.auc)).toBeLessThan(0.01)
    // The baseline is the job's family (LR for SS-LR), named in the summary.
    expect(reused.summary.aloneModel).toBe('lr')
  }, 240_000)

  it('an alignment reference that cannot serve the job is refused before anyone commits, with the reason', async () => {
    const unknown = await api(node(0), token(0), 'POST', '/v1/jobs', trainJob('no-such-psi'))
    expect(unknown.status).toBe(400)
    expect(unknown.body.error?.message).toMatch(/bank-a holds no alignment from job no-such-psi/)
    // lender-b's alignment was made on dataset partner: a job naming its dataset disjoint is rejected in its vote.
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', trainJob(psiJobId, 'disjoint'))
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    const id = (r.body.spec as { id: string }).id
    const views = await Promise.all([0, 1].map((i) => waitForJob(node(i), id, ['rejected'], 60_000)))
    for (const v of views) expect(v.reason).toMatch(/aligned dataset partner on lender-b, not disjoint/)
  })

  it('a party whose stored alignment differs fails the job, and the reason names it', async () => {
    // Same customers in another order on lender-b: rows would no longer line up across parties.
    const alignments = node(1).store.sub<{ dataset: string; ids: string[] }>('alignments')
    const held = (await alignments.get(psiJobId))!
    await alignments.put(psiJobId, { ...held, ids: [...held.ids].reverse() })
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', trainJob(psiJobId))
    expect(r.status, JSON.stringify(r.body)).toBe(201)
    const id = (r.body.spec as { id: string }).id
    const views = await Promise.all([0, 1].map((i) => waitForJob(node(i), id, ['failed'], 60_000)))
    for (const v of views) expect(v.reason).toMatch(/psi job .* held by lender-b differs/)
  })
})
