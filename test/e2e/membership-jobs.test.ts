import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RunningNode, startNode } from '../../node/daemon.ts'
import { initNode } from '../../node/init.ts'
import { requestProtocol } from '../../protocol/define.ts'
import { statusProtocol } from '../../protocol/membership.ts'
import { type SimConsortium, startConsortium, waitForMesh } from '../../sim/consortium.ts'
import { api, waitForJob } from '../helpers/jobs.ts'

let sim: SimConsortium
const scratch = mkdtempSync(join(tmpdir(), 'syndicate-membership-'))
const node = (i: number) => sim.nodes[i].node
const token = (i: number) => sim.nodes[i].token
const FOUNDERS = ['bank-a', 'lender-b', 'insurer-c']

beforeAll(async () => {
  sim = await startConsortium({ names: [...FOUNDERS, 'broker-d'] })
  for (let i = 0; i < 4; i++)
    expect((await api(node(i), token(i), 'PUT', '/v1/policy', { approval: 'auto' })).status).toBe(200)
})
afterAll(async () => {
  await sim?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

const parties = FOUNDERS.map((name) => ({ name, roles: ['observer'] }))

describe('membership changes as jobs', () => {
  it('refuses a removal whose parties cannot reach the threshold', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', {
      kind: 'membership',
      parties: parties.slice(0, 2),
      params: { action: 'remove', name: 'broker-d' },
    })
    expect(r.status).toBe(400)
    expect(r.body.error?.message).toMatch(/cannot reach the threshold of 3/)
  })

  it('removes a member once the threshold signs; every party installs it and the removed member is refused', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', {
      kind: 'membership',
      parties,
      params: { action: 'remove', name: 'broker-d' },
    })
    expect(r.status).toBe(201)
    const id = (r.body.spec as { id: string }).id
    const views = await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), id, ['succeeded'])))
    expect(new Set(views.map((v) => v.result?.resultHash)).size).toBe(1)
    for (const i of [0, 1, 2]) {
      expect(node(i).membership.version).toBe(2)
      expect(node(i).membership.isMember(node(3).peerId)).toBe(false)
    }
    const deadline = Date.now() + 10_000
    while (
      Date.now() < deadline &&
      [0, 1, 2].some((i) => node(i).host.getConnections(node(3).peerId).length > 0)
    ) {
      await new Promise((r) => setTimeout(r, 50))
    }
    const answered = await requestProtocol(node(3).host, node(0).peerId, statusProtocol, {
      consortiumVersion: 1,
    }).then(
      () => true,
      () => false,
    )
    expect(answered).toBe(false)
  })

  it('admits a new member: the parties sign version 3, the newcomer installs the chain and joins the mesh', async () => {
    const dir = join(scratch, 'newbank-e')
    const { token: eToken } = await initNode({ dir, name: 'newbank-e', httpPort: 0 })
    const e: RunningNode = await startNode({ dir, overrides: { logLevel: 'warn' }, env: {} })
    try {
      const member = {
        name: 'newbank-e',
        peerId: e.peerId.toString(),
        roles: ['bank'],
        addresses: e.addresses(),
      }
      const r = await api(node(1), token(1), 'POST', '/v1/jobs', {
        kind: 'membership',
        parties,
        params: { action: 'admit', member },
      })
      expect(r.status, JSON.stringify(r.body)).toBe(201)
      const id = (r.body.spec as { id: string }).id
      await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), id, ['succeeded'])))
      expect(node(0).membership.version).toBe(3)
      const chain = await api(node(0), token(0), 'GET', '/v1/consortium/chain')
      expect((chain.body.chain as unknown[]).length).toBe(3)
      const installed = await api(e, eToken, 'POST', '/v1/consortium', chain.body)
      expect(installed.status, JSON.stringify(installed.body)).toBe(200)
      await waitForMesh([node(0), node(1), node(2), e], 20_000)
    } finally {
      await e.stop()
    }
  })
})
