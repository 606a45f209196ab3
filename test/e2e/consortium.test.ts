import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import { startNode } from '../../node/daemon.ts'
import { loadIdentity } from '../../node/identity.ts'
import { nextVersion, signDocument } from '../../protocol/consortium.ts'
import { requestProtocol } from '../../protocol/define.ts'
import { statusProtocol } from '../../protocol/membership.ts'
import { type SimConsortium, startConsortium, waitForMesh } from '../../sim/consortium.ts'
import { captureLogs } from '../helpers/logs.ts'

let sim: SimConsortium
const logs = captureLogs()

beforeAll(async () => {
  sim = await startConsortium({
    names: ['bank-a', 'bank-b', 'insurer-c'],
    logLevel: 'info',
    logDestination: logs.destination,
  })
})
afterAll(async () => {
  await sim?.stop()
})

const node = (i: number) => sim.nodes[i].node

describe('consortium over libp2p on loopback', () => {
  it('three members connect in a full mesh', () => {
    for (const a of sim.nodes) {
      const others = sim.nodes.filter((b) => b !== a)
      for (const b of others) expect(a.node.host.getConnections(b.node.peerId).length).toBeGreaterThan(0)
    }
  })

  it('a node with a valid identity that is not in the document is refused and receives nothing', async () => {
    // A plain libp2p node with a valid Ed25519 identity and no gater of its own: it will talk to anyone.
    const outsider = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
    })
    let received = 0
    await outsider.handle(statusProtocol.id, () => {
      received++
    })
    try {
      const target = node(0).addresses()[0]
      // The outsider's side may finish its half of the upgrade before the member's gater drops the socket, so
      // what counts is that nothing usable remains: no connection, no stream, no reply.
      await outsider.dial(multiaddr(target), { signal: AbortSignal.timeout(5000) }).catch(() => undefined)
      const rejected = await requestProtocol(outsider, node(0).peerId, statusProtocol, {
        consortiumVersion: 0,
      }).then(
        () => false,
        () => true,
      )
      expect(rejected).toBe(true)
      // Members do not dial it either, even when told its address.
      const dialled = await node(1)
        .host.dial(outsider.getMultiaddrs()[0], { signal: AbortSignal.timeout(5000) })
        .then(
          () => true,
          () => false,
        )
      expect(dialled).toBe(false)
      const deadline = Date.now() + 5000
      while (outsider.getConnections().length > 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20))
      expect(outsider.getConnections().length).toBe(0)
      expect(received).toBe(0)
      const refusal = logs.find(
        (l) =>
          l.msg === 'refused connection: not a consortium member' && l.peer === outsider.peerId.toString(),
      )
      expect(refusal).toBeDefined()
      expect(refusal?.node).toBe('bank-a')
      expect(node(0).host.getConnections(outsider.peerId).length).toBe(0)
    } finally {
      await outsider.stop()
    }
  })

  it('oversized and garbage frames reset the stream; the node keeps serving members', async () => {
    const attacker = node(1)
    const victim = node(0)
    for (const bytes of [
      new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]), // announces a 2 GiB frame
      new Uint8Array([0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00]), // a frame that is not JSON
      new TextEncoder().encode('\u0000\u0000\u0000\u0011{"unexpected":1}'), // JSON of the wrong shape
    ]) {
      const stream = await attacker.host.dialProtocol(victim.peerId, statusProtocol.id)
      stream.send(bytes)
      await stream.close().catch(() => undefined)
      const replies: Uint8Array[] = []
      await expect(
        (async () => {
          for await (const chunk of stream) replies.push(chunk.subarray())
          if (replies.length === 0) throw new Error('reset without reply')
        })(),
      ).rejects.toThrow()
    }
    expect(
      logs.find(
        (l) =>
          l.msg === 'bad request' &&
          l.code === 'ERR_MESSAGE_TOO_LARGE' &&
          l.peer === attacker.peerId.toString(),
      ),
    ).toBeDefined()
    expect(logs.find((l) => l.msg === 'bad request' && l.code === 'ERR_INVALID_MESSAGE')).toBeDefined()
    const status = await requestProtocol(node(2).host, victim.peerId, statusProtocol, {
      consortiumVersion: 1,
    })
    expect(status.name).toBe('bank-a')
    const again = await requestProtocol(attacker.host, victim.peerId, statusProtocol, {
      consortiumVersion: 1,
    })
    expect(again.consortiumVersion).toBe(1)
  })

  it('session channels deliver tagged messages between members and fail when a party drops', async () => {
    const parties = Object.fromEntries(sim.nodes.map((n) => [n.name, n.node.peerId.toString()]))
    const chans = sim.nodes.map((n) => n.node.sessions.open('job-1/attempt-1', n.name, parties))
    const payload = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff)
    const got = chans[1].recv('bank-a', 'matrix')
    await chans[0].send('bank-b', 'matrix', payload)
    expect(Buffer.compare(await got, payload)).toBe(0)
    const pending = chans[2].recv('bank-a', 'never-sent')
    await chans[0].send('insurer-c', 'warmup', new Uint8Array([1]))
    expect(await chans[2].recv('bank-a', 'warmup')).toEqual(new Uint8Array([1]))
    chans[0].close(new Error('bank-a aborted the job'))
    await expect(pending).rejects.toSatisfy((e) => isSyndicateError(e, 'ERR_CHANNEL_CLOSED'))
    chans[1].close()
    chans[2].close()
  })

  it('a restarted member keeps its peer id, reconnects, and finds its stored data intact', async () => {
    const before = node(2)
    const dir = before.dir
    const peerId = before.peerId.toString()
    await before.store.sub('meta').put('marker', { kept: true })
    await before.stop()
    const restarted = await startNode({
      dir,
      overrides: { logLevel: 'warn' },
      env: {},
      logDestination: logs.destination,
    })
    sim.nodes[2].node = restarted
    expect(restarted.peerId.toString()).toBe(peerId)
    expect(await restarted.store.sub('meta').get('marker')).toEqual({ kept: true })
    expect(restarted.membership.document?.body.id).toBe('sim')
    // Its HTTP port changed (port 0), but its libp2p address too: members learn it when it dials them.
    await waitForMesh(
      sim.nodes.map((n) => n.node),
      20_000,
    )
    // The operator token from init still works after the restart.
    const res = await fetch(`${restarted.httpUrl}/v1/node`, {
      headers: { authorization: `Bearer ${sim.nodes[2].token}` },
    })
    expect(res.status).toBe(200)
    expect(((await res.json()) as { peerId: string }).peerId).toBe(peerId)
  })

  it('HTTP: no token → 401, auditor on an operator route → 403, auditor reads governance', async () => {
    const n = sim.nodes[0]
    const url = n.node.httpUrl
    const noToken = await fetch(`${url}/v1/peers`)
    expect(noToken.status).toBe(401)
    expect(((await noToken.json()) as { error: { code: string } }).error.code).toBe('ERR_UNAUTHENTICATED')
    const created = await fetch(`${url}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${n.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'auditor', label: 'regulator' }),
    })
    const { token: auditor } = (await created.json()) as { token: string }
    const forbidden = await fetch(`${url}/v1/peers`, { headers: { authorization: `Bearer ${auditor}` } })
    expect(forbidden.status).toBe(403)
    expect(((await forbidden.json()) as { error: { code: string } }).error.code).toBe('ERR_FORBIDDEN')
    const gov = await fetch(`${url}/v1/consortium`, { headers: { authorization: `Bearer ${auditor}` } })
    expect(gov.status).toBe(200)
    const peers = await fetch(`${url}/v1/peers`, { headers: { authorization: `Bearer ${n.token}` } })
    const body = (await peers.json()) as { peers: Array<{ name: string; connected: boolean }> }
    expect(body.peers.map((p) => p.name).sort()).toEqual(['bank-b', 'insurer-c'])
    const spec = (await (await fetch(`${url}/v1/openapi.json`)).json()) as { paths: Record<string, unknown> }
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/v1/health', '/v1/node', '/v1/peers', '/v1/consortium']),
    )
    const bad = await fetch(`${url}/v1/consortium`, {
      method: 'POST',
      headers: { authorization: `Bearer ${n.token}`, 'content-type': 'application/json' },
      body: '{"body":{}}',
    })
    expect(bad.status).toBe(422)
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('ERR_INVALID_CONSORTIUM')
  })

  it('a successor document signed by the threshold supersedes the genesis on every node; the removed member is cut off', async () => {
    const removed = sim.nodes[2]
    let v2 = nextVersion(sim.document, {
      members: sim.document.body.members.filter((m) => m.name !== removed.name),
    })
    for (const n of sim.nodes.slice(0, 2)) {
      const id = loadIdentity(n.node.dir)
      v2 = await signDocument(v2, id.privateKey, id.peerId)
    }
    // Installed on one member only: the other learns it from that member.
    await node(0).membership.install(v2)
    await node(1).host.hangUp(node(0).peerId)
    const deadline = Date.now() + 20_000
    while (node(1).membership.version < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50))
    expect(node(1).membership.version).toBe(2)
    while (
      Date.now() < deadline &&
      (node(0).host.getConnections(removed.node.peerId).length > 0 ||
        node(1).host.getConnections(removed.node.peerId).length > 0)
    ) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(node(0).host.getConnections(removed.node.peerId).length).toBe(0)
    const answered = await requestProtocol(removed.node.host, node(0).peerId, statusProtocol, {
      consortiumVersion: 1,
    }).then(
      () => true,
      () => false,
    )
    expect(answered).toBe(false)
    expect(
      logs.find(
        (l) =>
          l.msg === 'refused connection: not a consortium member' &&
          l.peer === removed.node.peerId.toString(),
      ),
    ).toBeDefined()
  })
})
