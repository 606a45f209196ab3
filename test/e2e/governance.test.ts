import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyBundles } from '../../governance/verify.ts'
import { startNode } from '../../node/daemon.ts'
import { type SimConsortium, startConsortium, waitForMesh } from '../../sim/consortium.ts'
import { api, waitForJob } from '../helpers/jobs.ts'

let sim: SimConsortium
const node = (i: number) => sim.nodes[i].node
const token = (i: number) => sim.nodes[i].token
const PARTIES = ['bank-a', 'lender-b', 'insurer-c'].map((name) => ({ name, roles: ['observer'] }))

async function exportAll() {
  const bundles: Array<{ entries: unknown[] }> = []
  for (let i = 0; i < 3; i++) {
    await node(i).governance.checkpointNow()
  }
  for (let i = 0; i < 3; i++) await node(i).governance.witnessAll()
  for (let i = 0; i < 3; i++) {
    // An auditor's token reads the governance routes.
    const t = await api(node(i), token(i), 'POST', '/v1/tokens', { role: 'auditor', label: 'auditor' })
    const r = await fetch(`${node(i).httpUrl}/v1/audit/export`, {
      headers: { authorization: `Bearer ${t.body.token}` },
    })
    expect(r.status).toBe(200)
    bundles.push((await r.json()) as { entries: unknown[] })
  }
  return bundles
}

beforeAll(async () => {
  sim = await startConsortium({ names: ['bank-a', 'lender-b', 'insurer-c'] })
  for (let i = 0; i < 3; i++) await api(node(i), token(i), 'PUT', '/v1/policy', { approval: 'auto' })
})
afterAll(async () => sim?.stop())

describe('governance logs of real nodes', () => {
  it('a noop job is recorded by all three parties; the logs agree and verify offline, with cosignatures', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', { kind: 'noop', parties: PARTIES })
    const id = (r.body.spec as { id: string }).id
    await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), id, ['succeeded'])))
    const bundles = await exportAll()
    for (const b of bundles) {
      const types = (b.entries as Array<{ type: string }>).map((e) => e.type)
      expect(types).toEqual(
        expect.arrayContaining([
          'member.join',
          'job.propose',
          'job.vote',
          'job.commit',
          'job.start',
          'job.result',
        ]),
      )
    }
    const report = await verifyBundles(bundles, { minCosignatures: 2 })
    expect(report.failures).toEqual([])
    expect(report.ok).toBe(true)
    expect(report.jobs.sharedAcrossLogs).toBeGreaterThanOrEqual(1)
  })

  it("an entry's bytes altered in a node's store fail verification at that index", async () => {
    const bundles = await exportAll()
    const victim = bundles[1] as {
      entries: Array<{ type: string; body: { metrics: Record<string, number> } }>
    }
    const idx = victim.entries.findIndex((e) => e.type === 'job.result')
    victim.entries[idx].body.metrics.steps = 99
    const report = await verifyBundles(bundles)
    expect(report.ok).toBe(false)
    expect(report.failures.some((f) => f.index === idx)).toBe(true)
  })

  it('a rewritten history is detected by the witnesses, with evidence kept', async () => {
    // insurer-c's operator wipes its log and writes a different history of the same length.
    const c = node(2)
    const size = c.governance.current!.size
    await c.governance.checkpointNow()
    await node(0).governance.witnessAll()
    const dir = c.dir
    await c.stop()
    const { Level } = await import('level')
    const db = new Level(`${dir}/db`, { valueEncoding: 'json' })
    await db.sublevel('governance').clear()
    await db.close()
    const forged = await startNode({ dir, overrides: { logLevel: 'silent' }, env: {} })
    sim.nodes[2].node = forged
    // Re-installing membership on start does not re-log joins; fill the log with other entries.
    while (forged.governance.current!.size < size + 1) {
      await forged.governance.recorder.append(
        'policy.change',
        { policyHash: '0'.repeat(64), summary: 'rewritten' },
        {},
      )
    }
    await forged.governance.checkpointNow()
    await waitForMesh(
      sim.nodes.map((n) => n.node),
      20_000,
    )
    const results = await node(0).governance.witnessAll()
    expect(['inconsistent', 'flagged']).toContain(results['insurer-c'])
    const ev = await fetch(`${node(0).httpUrl}/v1/audit/evidence`, {
      headers: { authorization: `Bearer ${token(0)}` },
    })
    const body = (await ev.json()) as { evidence: Array<{ origin: string }> }
    expect(body.evidence.some((e) => e.origin.endsWith(forged.peerId.toString()))).toBe(true)
  })
})
