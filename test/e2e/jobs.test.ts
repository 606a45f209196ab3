import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import { startNode } from '../../node/daemon.ts'
import { loadIdentity } from '../../node/identity.ts'
import type { JobView } from '../../node/jobs/service.ts'
import { openStore } from '../../node/store.ts'
import { requestProtocol } from '../../protocol/define.ts'
import { readFrames, writeFrame } from '../../protocol/framing.ts'
import { Domains, jobsProtocol, unsigned } from '../../protocol/jobs.ts'
import { SESSION_PROTOCOL } from '../../protocol/session.ts'
import { signValue } from '../../protocol/signing.ts'
import { type SimConsortium, startConsortium, waitForMesh } from '../../sim/consortium.ts'
import { api, waitForJob } from '../helpers/jobs.ts'

let sim: SimConsortium
const node = (i: number) => sim.nodes[i].node
const token = (i: number) => sim.nodes[i].token
const PARTIES = [
  { name: 'bank-a', roles: ['label-holder'] },
  { name: 'lender-b', roles: ['feature-holder'] },
  { name: 'insurer-c', roles: ['feature-holder'] },
]

async function setPolicy(i: number, policy: Record<string, unknown>) {
  const r = await api(node(i), token(i), 'PUT', '/v1/policy', policy)
  expect(r.status).toBe(200)
}

async function propose(i: number, draft: Record<string, unknown>): Promise<JobView> {
  const r = await api(node(i), token(i), 'POST', '/v1/jobs', { kind: 'noop', parties: PARTIES, ...draft })
  expect(r.status, JSON.stringify(r.body)).toBe(201)
  return r.body as unknown as JobView
}

beforeAll(async () => {
  sim = await startConsortium({ names: ['bank-a', 'lender-b', 'insurer-c', 'outsider-d'] })
  for (let i = 0; i < 4; i++) await setPolicy(i, { approval: 'auto' })
})
afterAll(async () => sim?.stop())

describe('jobs between three members', () => {
  it('a noop job is proposed, approved by policy, committed, run and succeeds on every party', async () => {
    const job = await propose(0, { params: { steps: 3 } })
    const views = await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), job.spec.id, ['succeeded'])))
    for (const v of views) {
      expect(v.specHash).toBe(job.specHash)
      expect(v.history.map((h) => h.state)).toEqual([
        'proposed',
        'awaiting_approval',
        'committed',
        'running',
        'succeeded',
      ])
      expect(v.result?.metrics).toEqual({ steps: 3, parties: 3 })
    }
    expect(new Set(views.map((v) => v.result?.resultHash)).size).toBe(1)
    // The proposer's commit carries all three signed votes.
    expect(views[0].commit?.votes).toHaveLength(3)
    // A member that is not a party knows nothing of it.
    expect(await node(3).jobs.get(job.spec.id)).toBeUndefined()
  })

  it("a party's policy rejects: the job ends rejected with the reason, and nobody ran it", async () => {
    await setPolicy(2, { approval: 'auto', modes: ['mpc'] })
    try {
      const job = await propose(0, { mode: 'he' })
      const views = await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), job.spec.id, ['rejected'])))
      expect(views[0].reason).toMatch(/insurer-c rejected: privacy mode he is not allowed/)
      for (const v of views) expect(v.history.map((h) => h.state)).not.toContain('running')
    } finally {
      await setPolicy(2, { approval: 'auto' })
    }
  })

  it('manual approval: the job waits until the operator approves it', async () => {
    await setPolicy(1, { approval: 'manual' })
    try {
      const job = await propose(0, {})
      await waitForJob(node(1), job.spec.id, ['awaiting_approval'])
      const pending = await api(node(1), token(1), 'GET', '/v1/jobs/pending')
      expect((pending.body.jobs as JobView[]).map((j) => j.spec.id)).toContain(job.spec.id)
      await new Promise((r) => setTimeout(r, 300))
      expect((await node(0).jobs.get(job.spec.id))?.state).toBe('awaiting_approval')
      const approved = await api(node(1), token(1), 'POST', `/v1/jobs/${job.spec.id}/approve`)
      expect(approved.status).toBe(200)
      await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), job.spec.id, ['succeeded'])))
      // Approving twice is refused with a clear error.
      const again = await api(node(1), token(1), 'POST', `/v1/jobs/${job.spec.id}/approve`)
      expect(again.status).toBe(409)
    } finally {
      await setPolicy(1, { approval: 'auto' })
    }
  })

  it('a job nobody approves expires at its deadline on every party', async () => {
    await setPolicy(2, { approval: 'manual' })
    try {
      const job = await propose(0, { timeoutSeconds: 1 })
      const views = await Promise.all(
        [0, 1, 2].map((i) => waitForJob(node(i), job.spec.id, ['expired'], 10_000)),
      )
      for (const v of views) expect(v.reason).toMatch(/deadline .* passed/)
    } finally {
      await setPolicy(2, { approval: 'auto' })
    }
  })

  it('any party can cancel mid-run; every party ends cancelled', async () => {
    const job = await propose(0, { params: { steps: 200, stepMs: 50 } })
    await waitForJob(node(2), job.spec.id, ['running'])
    const r = await api(node(2), token(2), 'POST', `/v1/jobs/${job.spec.id}/cancel`, {
      reason: 'wrong dataset',
    })
    expect(r.status).toBe(200)
    const views = await Promise.all([0, 1, 2].map((i) => waitForJob(node(i), job.spec.id, ['cancelled'])))
    for (const v of views) expect(v.reason).toMatch(/cancelled by insurer-c: wrong dataset/)
  })

  it('a party killed mid-run and restarted: the job fails everywhere with a recorded reason', async () => {
    const job = await propose(0, { params: { steps: 400, stepMs: 50 } })
    await waitForJob(node(1), job.spec.id, ['running'])
    const dir = node(1).dir
    await node(1).stop()
    const others = await Promise.all([0, 2].map((i) => waitForJob(node(i), job.spec.id, ['failed'])))
    for (const v of others) expect(v.reason).toMatch(/lender-b/)
    // A record as nodes stored it before a job's parts were kept apart (one value with everything).
    const legacyId = `${job.spec.id}-v1`
    const store = await openStore(dir)
    await store.sub('jobs').put(legacyId, {
      spec: { ...job.spec, id: legacyId },
      specHash: job.specHash,
      proposal: { signature: job.proposal.signature },
      state: 'succeeded',
      votes: job.votes,
      outcomes: {},
      history: [{ state: 'succeeded', at: job.updatedAt }],
      updatedAt: job.updatedAt,
    })
    await store.close()
    sim.nodes[1].node = await startNode({ dir, overrides: { logLevel: 'warn' }, env: {} })
    const restarted = await waitForJob(node(1), job.spec.id, ['failed'])
    expect(restarted.reason).toMatch(/restarted during the run/)
    // Read back from the store (kept compact): the signed proposal and the commit with every vote, whole.
    expect(restarted.proposal).toEqual(job.proposal)
    expect(restarted.commit?.votes.map((v) => v.voter)).toEqual(job.spec.parties.map((p) => p.peerId))
    expect(restarted.commit?.signature).toBe((await node(0).jobs.get(job.spec.id))?.commit?.signature)
    const legacy = await node(1).jobs.get(legacyId)
    expect(legacy?.state).toBe('succeeded')
    expect(legacy?.proposal).toEqual({
      spec: { ...job.spec, id: legacyId },
      signature: job.proposal.signature,
    })
    expect(legacy?.votes).toEqual(job.votes)
    await waitForMesh(
      sim.nodes.map((n) => n.node),
      20_000,
    )
  })

  it('a vote signed by a non-party key and a commit replayed from another job are rejected', async () => {
    await setPolicy(1, { approval: 'manual' })
    try {
      const done = await propose(0, {})
      const finished = await waitForJob(node(0), done.spec.id, ['awaiting_approval', 'succeeded'])
      // Approve only once lender-b holds the proposal: it may still be on its way.
      await waitForJob(node(1), done.spec.id, ['awaiting_approval'])
      const approved = await api(node(1), token(1), 'POST', `/v1/jobs/${done.spec.id}/approve`)
      expect(approved.status, JSON.stringify(approved.body)).toBe(200)
      const first = await waitForJob(node(0), done.spec.id, ['succeeded'])
      expect(finished.spec.id).toBe(first.spec.id)
      const target = await propose(0, {})
      await waitForJob(node(1), target.spec.id, ['awaiting_approval'])

      // outsider-d is a member but not a party: it signs a vote naming itself.
      const d = loadIdentity(node(3).dir)
      const body = {
        jobId: target.spec.id,
        specHash: target.specHash,
        voter: d.peerId.toString(),
        decision: 'accept' as const,
      }
      const vote = { ...body, signature: await signValue(Domains.vote, body, d.privateKey) }
      await expect(
        requestProtocol(node(3).host, node(0).peerId, jobsProtocol, { type: 'vote', vote }),
      ).rejects.toThrow(/not a party/)

      // lender-b's vote, but signed with outsider-d's key.
      const forged = { ...body, voter: node(1).peerId.toString() }
      const forgedVote = { ...forged, signature: await signValue(Domains.vote, forged, d.privateKey) }
      await expect(
        requestProtocol(node(1).host, node(0).peerId, jobsProtocol, { type: 'vote', vote: forgedVote }),
      ).rejects.toThrow(/signature is invalid/)

      // The proposer's valid commit of the first job, pointed at the second one.
      const commit = first.commit!
      const replay = { ...commit, jobId: target.spec.id }
      await expect(
        requestProtocol(node(0).host, node(1).peerId, jobsProtocol, { type: 'commit', commit: replay }),
      ).rejects.toThrow(/another job or spec/)
      // Re-signed by the proposer for the new id, the old votes still do not cover the new spec.
      const k = loadIdentity(node(0).dir)
      const resigned = { ...unsigned(replay), specHash: target.specHash }
      const resignedCommit = {
        ...resigned,
        signature: await signValue(Domains.commit, resigned, k.privateKey),
      }
      await expect(
        requestProtocol(node(0).host, node(1).peerId, jobsProtocol, {
          type: 'commit',
          commit: resignedCommit,
        }),
      ).rejects.toThrow(/lacks an accepting vote/)

      expect((await node(1).jobs.get(target.spec.id))?.state).toBe('awaiting_approval')
      expect((await node(0).jobs.get(target.spec.id))?.state).toBe('awaiting_approval')
      await api(node(0), token(0), 'POST', `/v1/jobs/${target.spec.id}/cancel`, { reason: 'test over' })
    } finally {
      await setPolicy(1, { approval: 'auto' })
    }
  })

  it('job messages share one stream per peer; a bad request is answered alone, garbage resets only its stream', async () => {
    const from = node(1)
    const cancelFor = (jobId: string) => ({
      type: 'cancel' as const,
      cancel: {
        jobId,
        specHash: 'ab'.repeat(32),
        by: from.peerId.toString(),
        reason: 'test',
        signature: `${'A'.repeat(86)}==`,
      },
    })
    // Sixty requests at once, each answered with its own job's error: answers are matched to their requests.
    const answers = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) =>
        requestProtocol(from.host, node(0).peerId, jobsProtocol, cancelFor(`unknown-${i}`)),
      ),
    )
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe('rejected')
      expect(String((a as PromiseRejectedResult).reason.message)).toMatch(
        new RegExp(`ERR_NOT_FOUND: no job unknown-${i} on`),
      )
    }
    const outbound = from.host
      .getConnections(node(0).peerId)
      .flatMap((c) => c.streams)
      .filter((st) => st.protocol === jobsProtocol.id && st.direction === 'outbound')
    expect(outbound.length).toBe(1)

    // A raw stream: one frame with a request outside the schema and a valid one; both are answered.
    const stream = await from.host.dialProtocol(node(0).peerId, jobsProtocol.id)
    const frames = readFrames(stream, jobsProtocol.maxMessageBytes)
    await writeFrame(
      stream,
      new TextEncoder().encode(
        JSON.stringify([
          { id: 1, req: { type: 'teleport' } },
          { id: 2, req: cancelFor('unknown-raw') },
        ]),
      ),
    )
    const replies = new Map<number, { ok: boolean; error?: { code: string } }>()
    while (replies.size < 2) {
      const next = await frames.next()
      if (next.done) throw new Error('stream ended before both answers')
      for (const r of JSON.parse(new TextDecoder().decode(next.value))) replies.set(r.id, r)
    }
    expect(replies.get(1)).toMatchObject({ ok: false, error: { code: 'ERR_INVALID_MESSAGE' } })
    expect(replies.get(2)).toMatchObject({ ok: false, error: { code: 'ERR_NOT_FOUND' } })
    // A frame that is not a request array resets that stream only; the node keeps answering.
    await writeFrame(stream, new TextEncoder().encode('not json'))
    await expect(
      (async () => {
        for (;;) if ((await frames.next()).done) throw new Error('closed without a reset')
      })(),
    ).rejects.toThrow()
    await expect(
      requestProtocol(from.host, node(0).peerId, jobsProtocol, cancelFor('unknown-after')),
    ).rejects.toThrow(/no job unknown-after/)
  })

  it('bad drafts get 400 with the problem; unknown jobs 404', async () => {
    const r = await api(node(0), token(0), 'POST', '/v1/jobs', {
      kind: 'noop',
      parties: [{ name: 'nobody', roles: ['observer'] }],
    })
    expect(r.status).toBe(400)
    expect(r.body.error?.message).toMatch(/nobody is not a member/)
    const bad = await api(node(0), token(0), 'POST', '/v1/jobs', { kind: 'teleport', parties: PARTIES })
    expect(bad.status).toBe(400)
    expect(bad.body.error?.message).toMatch(/kind/)
    expect((await api(node(0), token(0), 'GET', '/v1/jobs/nope-123')).status).toBe(404)
  })
})

describe('session channels (the party channel of a job) over libp2p', () => {
  const partiesOf = (idx: number[]) =>
    Object.fromEntries(idx.map((i) => [sim.nodes[i].name, node(i).peerId.toString()]))

  it('share one stream per peer; records sent before a session opens wait for it, in order', async () => {
    const parties = partiesOf([0, 1, 2])
    const ids = Array.from({ length: 20 }, (_, i) => `shared-${i}-${Date.now()}`)
    // bank-a sends and leaves each session before lender-b has opened it.
    for (const id of ids) {
      const ch = node(0).sessions.open(id, 'bank-a', parties)
      await Promise.all([0, 1, 2].map((k) => ch.send('lender-b', `m${k}`, new Uint8Array([k, 7]))))
      ch.close()
    }
    const outbound = node(0)
      .host.getConnections(node(1).peerId)
      .flatMap((c) => c.streams)
      .filter((st) => st.protocol === SESSION_PROTOCOL && st.direction === 'outbound')
    expect(outbound.length).toBe(1)
    for (const id of ids) {
      const ch = node(1).sessions.open(id, 'lender-b', parties)
      for (const k of [0, 1, 2]) expect(await ch.recv('bank-a', `m${k}`)).toEqual(new Uint8Array([k, 7]))
      // The end of bank-a's session came after its messages: what it never sent fails at once.
      await expect(ch.recv('bank-a', 'm3')).rejects.toSatisfy(
        (e) => isSyndicateError(e, 'ERR_CHANNEL_CLOSED') && /bank-a left/.test((e as Error).message),
      )
      expect(ch.stats().messagesReceived).toBe(3)
      ch.close()
    }
  })

  it('refuses a member that claims to be another party, and the session carries on', async () => {
    const id = `impostor-${Date.now()}`
    const parties = partiesOf([0, 1, 2])
    const victim = node(0).sessions.open(id, 'bank-a', parties)
    const real = node(1).sessions.open(id, 'lender-b', parties)
    // outsider-d names itself lender-b in its own view of the session.
    const impostor = node(3).sessions.open(id, 'lender-b', {
      'bank-a': node(0).peerId.toString(),
      'lender-b': node(3).peerId.toString(),
    })
    const answer = impostor.recv('bank-a', 'never')
    await impostor.send('bank-a', 'x', new Uint8Array([6, 6, 6]))
    await expect(answer).rejects.toSatisfy(
      (e) => isSyndicateError(e, 'ERR_CHANNEL_CLOSED') && /refused session/.test((e as Error).message),
    )
    await real.send('bank-a', 'x', new Uint8Array([1]))
    expect(await victim.recv('lender-b', 'x')).toEqual(new Uint8Array([1]))
    for (const ch of [victim, real, impostor]) ch.close()
  })

  it('bounds messages: an oversized one is refused before it is sent', async () => {
    const id = `bounds-${Date.now()}`
    const ch = node(0).sessions.open(id, 'bank-a', partiesOf([0, 1]))
    await expect(ch.send('lender-b', 't', new Uint8Array(64 * 1024 * 1024))).rejects.toSatisfy((e) =>
      isSyndicateError(e, 'ERR_MESSAGE_TOO_LARGE'),
    )
    expect(() => node(0).sessions.open('x'.repeat(201), 'bank-a', partiesOf([0, 1]))).toThrow(/session id/)
    ch.close()
  })
})
