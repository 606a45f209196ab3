import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyBundles } from '../../governance/verify.ts'
import { type Dataset, joinOnId, prefixColumns, selectColumns, subset } from '../../learning/data/dataset.ts'
import { stratifiedSplit } from '../../learning/data/split.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { scoreDataset, trainModel } from '../../learning/models/train.ts'
import type { OwnerRecord } from '../../node/jobs/enclave.ts'
import { type SimConsortium, startConsortium } from '../../sim/consortium.ts'
import { call, openPolicies, registerVerticalData, runJob, teeJob } from '../../sim/scenario.ts'
import { findLeaks } from '../helpers/leaks.ts'
import { guest, host } from '../helpers/vertical.ts'

/**
 * Enclave mode between four real nodes on loopback: bank-a (label and 13 features), lender-b (x0–x4 of the
 * host file), insurer-c (x5–x9) upload into the enclave cluster that enclave-d runs in two child processes.
 */
let sim: SimConsortium
const traffic = new Map<string, Map<string, Uint8Array[]>>()

beforeAll(async () => {
  sim = await startConsortium({
    names: ['bank-a', 'lender-b', 'insurer-c', 'enclave-d'],
    enclaves: { 'enclave-d': 2 },
  })
  await openPolicies(sim)
  await registerVerticalData(sim)
  for (const n of sim.nodes)
    n.node.sessions.tap((m) => {
      const bySender = traffic.get(m.session) ?? new Map<string, Uint8Array[]>()
      traffic.set(m.session, bySender)
      bySender.set(m.from, [...(bySender.get(m.from) ?? []), m.payload])
    })
}, 120_000)
afterAll(async () => sim?.stop())

const node = (name: string) => sim.nodes.find((n) => n.name === name)!
const setPolicy = (name: string, policy: Record<string, unknown>) =>
  call(node(name).node, node(name).token, 'PUT', '/v1/policy', {
    approval: 'auto',
    datasets: { '*': {} },
    ...policy,
  })

async function jobEntries(name: string, jobId: string) {
  const log = node(name).node.governance.current!
  return (await log.entries(0, log.size)).filter((e) => e.jobId === jobId)
}

/** The pooled rows as the enclave joins them: columns qualified by owner, label holder first. */
function pooled(): Dataset {
  const q = (d: Dataset, party: string) => prefixColumns(d, `${party}.`)
  const lender = selectColumns(host, ['x0', 'x1', 'x2', 'x3', 'x4'])
  const insurer = selectColumns(host, ['x5', 'x6', 'x7', 'x8', 'x9'])
  return joinOnId(joinOnId(q(guest, 'bank-a'), q(lender, 'lender-b')), q(insurer, 'insurer-c'))
}

describe('enclave (tee) training jobs', () => {
  it('trains LR in the enclave: plaintext AUC, model to bank-a only, data destroyed and logged', async () => {
    const r = await runJob(sim, 'bank-a', teeJob('lr', 'enclave-d', { seed: 11 }))
    expect(r.state, r.reason).toBe('succeeded')
    const { train, test } = stratifiedSplit(pooled(), 11, 0.2)
    const plain = auc(test.y!, scoreDataset(trainModel('lr', train), test))
    expect(Math.abs(r.metrics.auc - plain)).toBeLessThan(0.005)
    expect(r.metrics.rows_joined).toBe(30_000)

    const views = await Promise.all(sim.nodes.map((n) => n.node.jobs.get(r.id)))
    expect(new Set(views.map((v) => v?.result?.resultHash)).size).toBe(1)
    const kept = (name: string) => node(name).node.store.sub<OwnerRecord>('enclave-jobs').get(r.id)
    expect((await kept('bank-a'))?.model?.kind).toBe('lr')
    expect((await kept('lender-b'))?.model).toBeUndefined()

    for (const n of sim.nodes) {
      const types = (await jobEntries(n.name, r.id)).map((e) => e.type)
      expect(types, n.name).toContain('enclave.destroyed')
      if (n.name !== 'enclave-d') expect(types, n.name).toContain('attestation')
    }
    // An auditor holding every member's log sees one story, the same signed destruction record included.
    const bundles = []
    for (const n of sim.nodes) {
      await n.node.governance.checkpointNow()
      const t = await call<{ token: string }>(n.node, n.token, 'POST', '/v1/tokens', {
        role: 'auditor',
        label: 'a',
      })
      bundles.push(await call(n.node, t.token, 'GET', '/v1/audit/export'))
    }
    const audit = await verifyBundles(bundles)
    expect(audit.failures).toEqual([])
    expect(audit.jobs.sharedAcrossLogs).toBeGreaterThan(0)
    // The enclave processes hold nothing of the job any more.
    const info = await call<{ instances: Array<{ holds: Record<string, number> }> }>(
      node('enclave-d').node,
      node('enclave-d').token,
      'GET',
      '/v1/enclave',
    )
    expect(info.instances).toHaveLength(2)
    for (const i of info.instances)
      expect(i.holds).toMatchObject({ jobs: 0, uploads: 0, dataKeys: 0, plaintextRows: 0 })
    // What bank-a sent the enclave host is ciphertext: no raw value or label in it.
    const sent = traffic.get(`job:${r.id}`)?.get('bank-a') ?? []
    expect(sent.reduce((s, b) => s + b.byteLength, 0)).toBeGreaterThan(1_000_000)
    const leaks = findLeaks(sent, {
      X: guest.X,
      rows: guest.ids.length,
      cols: guest.featureNames.length,
      y: guest.y,
    })
    expect(leaks, leaks.examples.join('; ')).toMatchObject({ float64: 0, float32Pairs: 0, labels: 0 })
  }, 300_000)

  it('serves federated scoring from inside the enclave: only bank-a gets scores, equal to its model’s', async () => {
    const done = (await node('bank-a').node.jobs.list()).find(
      (j) => j.spec.mode === 'tee' && j.state === 'succeeded',
    )!
    const pool = pooled()
    const rows = [0, 17, 29_999]
    const r = await call<{ scores: Array<{ id: string; probability: number }>; ms: number }>(
      node('bank-a').node,
      node('bank-a').token,
      'POST',
      `/v1/federated/${done.spec.id}/score`,
      { ids: rows.map((i) => pool.ids[i]) },
    )
    const model = (await node('bank-a').node.store.sub<OwnerRecord>('enclave-jobs').get(done.spec.id))!.model!
    const expected = scoreDataset(model, subset(pool, rows))
    for (const [k, s] of r.scores.entries()) expect(s.probability).toBeCloseTo(expected[k], 9)
    // A feature holder cannot ask: it is not the label holder, and it has no key for the scores.
    await expect(
      call(node('lender-b').node, node('lender-b').token, 'POST', `/v1/federated/${done.spec.id}/score`, {
        ids: [pool.ids[0]],
      }),
    ).rejects.toThrow(/label holder/)
  }, 120_000)

  it('is rejected when a data owner’s enclave policy excludes the algorithm', async () => {
    await setPolicy('lender-b', { enclave: { algorithms: ['lr'] } })
    try {
      const r = await runJob(sim, 'bank-a', teeJob('gbdt', 'enclave-d'))
      expect(r.state).toBe('rejected')
      expect(r.reason).toMatch(/enclave policy does not allow algorithm gbdt \(it allows lr\)/)
    } finally {
      await setPolicy('lender-b', {})
    }
  }, 120_000)

  it('fails with the reason, and logs the refusal, when the enclave build is not one an owner trusts', async () => {
    await setPolicy('insurer-c', { enclave: { appraisal: { measurements: ['ab'.repeat(32)] } } })
    try {
      const r = await runJob(sim, 'bank-a', teeJob('lr', 'enclave-d'))
      expect(r.state).toBe('failed')
      // The refusing party records why; the others see the job fail (or its session end) once it gives up.
      const view = await node('insurer-c').node.jobs.get(r.id)
      expect(view?.reason).toMatch(
        /enclave of enclave-d is not trusted: measurement .* is not an allowed enclave build/,
      )
      const refusals = (await jobEntries('insurer-c', r.id)).filter(
        (e) => e.type === 'attestation' && (e.body as { verdict: string }).verdict === 'rejected',
      )
      expect(refusals).toHaveLength(1)
      const info = await call<{ instances: Array<{ holds: Record<string, number> }> }>(
        node('enclave-d').node,
        node('enclave-d').token,
        'GET',
        '/v1/enclave',
      )
      for (const i of info.instances) expect(i.holds).toMatchObject({ jobs: 0, uploads: 0 })
    } finally {
      await setPolicy('insurer-c', {})
    }
  }, 120_000)
})
