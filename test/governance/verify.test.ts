import { describe, expect, it } from 'vitest'
import { type Bundle, exportBundle } from '../../governance/bundle.ts'
import { entrySigningBytes, type LogEntry } from '../../governance/entry.ts'
import { toHex } from '../../governance/keys.ts'
import { GovernanceLog } from '../../governance/log.ts'
import { entryKey, openStore } from '../../governance/store.ts'
import { verifyBundles } from '../../governance/verify.ts'
import { localLogPeer, Witness } from '../../governance/witness.ts'
import { hash, testSigner, useTempDbs } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const carol = testSigner('carol')
const mallory = testSigner('mallory')
const members = [alice.member, bob.member, carol.member]

const dbs = useTempDbs()

/** Three members; alice and bob run job j1 together, carol only witnesses. Everyone checkpoints and cosigns. */
async function consortium(
  opts: { bobSpec?: string; bobResult?: string; aliceVoteAtBob?: 'accept' | 'reject' } = {},
) {
  const signers = [alice, bob, carol]
  const dbsBy = await Promise.all(signers.map(() => dbs.open()))
  const logs = await Promise.all(
    signers.map((signer, i) => GovernanceLog.open({ db: dbsBy[i], consortiumId: 'credit-club', signer })),
  )
  const witnesses = signers.map((signer, i) => new Witness({ db: dbsBy[i], signer, members: () => members }))
  const [a, b, c] = logs
  await a.append('member.join', { member: alice.member, documentHash: hash('doc v1') })
  await b.append('member.join', { member: bob.member, documentHash: hash('doc v1') })
  await c.append('dataset.register', { datasetId: 'carol-loans', schemaHash: hash('carol schema') })
  await a.append('dataset.register', { datasetId: 'alice-loans', schemaHash: hash('alice schema') })
  const spec = hash('job j1 spec')
  const parties = [alice.member.peerId, bob.member.peerId]
  for (const [log, specHash] of [
    [a, spec],
    [b, opts.bobSpec ?? spec],
  ] as const) {
    await log.append(
      'job.propose',
      { specHash, kind: 'vertical-lr', proposer: alice.member.peerId, parties },
      { jobId: 'j1' },
    )
    // What alice voted, as each log recorded it.
    const decision = log === b ? (opts.aliceVoteAtBob ?? 'accept') : 'accept'
    await log.append('job.vote', { specHash, voter: alice.member.peerId, decision }, { jobId: 'j1' })
    await log.append('job.vote', { specHash, voter: bob.member.peerId, decision: 'accept' }, { jobId: 'j1' })
    await log.append('job.commit', { specHash }, { jobId: 'j1' })
    await log.append('job.start', { specHash }, { jobId: 'j1' })
  }
  await a.append(
    'job.result',
    {
      specHash: spec,
      resultHash: hash('outcome'),
      modelHash: hash('model'),
      metrics: { auc: 0.781, ks: 0.42 },
    },
    { jobId: 'j1' },
  )
  await b.append(
    'job.result',
    {
      specHash: opts.bobSpec ?? spec,
      resultHash: hash(opts.bobResult ?? 'outcome'),
      modelHash: hash('model'),
      metrics: { auc: 0.781 },
    },
    { jobId: 'j1' },
  )
  // Appended at once: one group, under one signature of its Merkle root (governance/batch-sign.ts).
  await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      a.append('policy.change', { policyHash: hash(`p${i}`), summary: `rule ${i}` }),
    ),
  )
  const peer = localLogPeer(logs, () => members)
  const witnessRound = async () => {
    for (const log of logs) await log.checkpoint()
    for (const [i, w] of witnesses.entries()) {
      for (const log of logs)
        if (log !== logs[i]) expect((await w.witness(peer, log.origin)).status).toBe('cosigned')
    }
  }
  await witnessRound()
  await a.append('privacy.spend', { datasetId: 'alice-loans', epsilon: 0.5, delta: 1e-6 }, { jobId: 'j1' })
  await witnessRound()
  // Two entries after the last checkpoint: authenticated by their own signatures only.
  await a.append('policy.change', { policyHash: hash('late'), summary: 'after the checkpoint' })
  await b.append('policy.change', { policyHash: hash('late'), summary: 'after the checkpoint' })
  const exportAll = () =>
    Promise.all(logs.map((log, i) => exportBundle({ log, members, witness: witnesses[i] }))) as Promise<
      Bundle[]
    >
  return { logs, dbs: dbsBy, exportAll }
}

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T

describe('verifyBundles', () => {
  it('accepts an honest consortium, checking checkpoints, cosignatures, proofs and the shared job', async () => {
    const { exportAll } = await consortium()
    const bundles = await exportAll()
    // Through JSON, as a file on disk would be.
    const report = await verifyBundles(clone(bundles), { trustedMembers: members, minCosignatures: 2 })
    expect(report.failures).toEqual([])
    expect(report.ok).toBe(true)
    expect(report.logs.map((l) => l.owner)).toEqual(['alice', 'bob', 'carol'])
    expect(report.logs.every((l) => l.cosigners.length === 2)).toBe(true)
    expect(report.logs[0].signaturesVerified).toBe(1)
    expect(report.jobs).toEqual({ total: 1, sharedAcrossLogs: 1 })
    expect(report.checks.join('\n')).toContain('consistency proofs verified')
    const all = await verifyBundles(clone(bundles), { signatures: 'all' })
    expect(all.ok).toBe(true)
    expect(all.logs[0].signaturesVerified).toBe(bundles[0].entries.length)
  })

  it('names the index of an entry whose bytes were altered in the store', async () => {
    const { exportAll, dbs: stores } = await consortium()
    const store = openStore(stores[0])
    // 20 lies inside the group signed as one batch: the others of its batch still verify, so it is named.
    const batched = (await exportAll())[0].entries[20] as { signature: string }
    expect(batched.signature.length).toBeGreaterThan(128)
    for (const index of [7, 20, 38]) {
      const bytes = (await store.get(entryKey(index)))!
      const text = new TextDecoder().decode(bytes)
      // Still valid, canonical JSON: only the recorded time changes.
      const altered = text.replace('"time":', '"time":1')
      expect(altered).not.toBe(text)
      await store.put(entryKey(index), new TextEncoder().encode(altered))
      for (const signatures of ['checkpoints', 'all'] as const) {
        const report = await verifyBundles(await exportAll(), { signatures })
        expect(report.ok).toBe(false)
        expect(report.failures[0]).toMatchObject({ bundle: 0, index })
        expect(report.failures[0].reason).toMatch(/signature does not verify/)
      }
      await store.put(entryKey(index), bytes)
    }
    // An entry after the last checkpoint is caught by its own signature.
    const last = (await exportAll())[0].entries.length - 1
    const bytes = (await store.get(entryKey(last)))!
    await store.put(
      entryKey(last),
      new TextEncoder().encode(new TextDecoder().decode(bytes).replace('after', 'before')),
    )
    const report = await verifyBundles(await exportAll())
    expect(report.failures[0]).toMatchObject({ bundle: 0, index: last })
  })

  it('fails an entry signed by a key that is not a member', async () => {
    const { exportAll } = await consortium()
    const [bundle] = await exportAll()
    const target = bundle.entries[3] as LogEntry
    // Mallory signs under her own identity...
    const byMallory: LogEntry = { ...target, signer: mallory.member, signature: '' }
    byMallory.signature = toHex(await mallory.sign(entrySigningBytes(byMallory)))
    const one = clone(bundle)
    one.entries[3] = byMallory
    const r1 = await verifyBundles([one])
    expect(r1.failures[0]).toMatchObject({ index: 3 })
    expect(r1.failures[0].reason).toMatch(/not a member/)
    // ...or forges alice's identity with her own key.
    const forged: LogEntry = {
      ...target,
      body: { datasetId: 'alice-loans', schemaHash: hash('x') },
      signature: '',
    }
    forged.signature = toHex(await mallory.sign(entrySigningBytes(forged)))
    const two = clone(bundle)
    two.entries[3] = forged
    for (const signatures of ['checkpoints', 'all'] as const) {
      const r2 = await verifyBundles([two], { signatures })
      expect(r2.failures[0]).toMatchObject({ index: 3 })
    }
    // ...or slips herself into the bundle's member list: the auditor's own list does not have her.
    const three = clone(bundle)
    three.members.push(mallory.member)
    expect((await verifyBundles([three], { trustedMembers: members })).ok).toBe(false)
    expect((await verifyBundles([clone(bundle)], { trustedMembers: members })).ok).toBe(true)
  })

  it('fails a job whose parties disagree on the spec hash, a vote or the result', async () => {
    const spec = await consortium({ bobSpec: hash('a different spec') })
    const r1 = await verifyBundles(await spec.exportAll())
    expect(r1.ok).toBe(false)
    expect(r1.failures[0].origin).toBe(spec.logs[1].origin)
    expect(r1.failures[0].reason).toMatch(/job j1: spec hash .* disagrees/)
    expect(r1.failures[0].index).toBe(1)
    // Each log on its own is fine: only the cross-check sees it.
    expect((await verifyBundles([(await spec.exportAll())[1]])).ok).toBe(true)
    const result = await consortium({ bobResult: 'another outcome' })
    const r2 = await verifyBundles(await result.exportAll())
    expect(r2.failures).toHaveLength(1)
    expect(r2.failures[0]).toMatchObject({ origin: result.logs[1].origin, index: 6 })
    expect(r2.failures[0].reason).toMatch(/job j1: resultHash .* disagrees/)
    const vote = await consortium({ aliceVoteAtBob: 'reject' })
    const r3 = await verifyBundles(await vote.exportAll())
    expect(r3.failures[0]).toMatchObject({ origin: vote.logs[1].origin, index: 2 })
    expect(r3.failures[0].reason).toMatch(/vote of .* is reject here but accept/)
  })

  it('fails truncated, reordered, garbled and forked bundles', async () => {
    const { exportAll, logs } = await consortium()
    const [bundle] = await exportAll()
    const truncated = clone(bundle)
    truncated.entries = truncated.entries.slice(0, 20)
    expect((await verifyBundles([truncated])).failures[0].reason).toMatch(/only 20 entries/)
    const swapped = clone(bundle)
    ;[swapped.entries[4], swapped.entries[5]] = [swapped.entries[5], swapped.entries[4]]
    expect((await verifyBundles([swapped])).failures[0]).toMatchObject({ index: 4 })
    const garbled = clone(bundle)
    garbled.entries[9] = '{"v":1,'
    expect((await verifyBundles([garbled])).failures[0]).toMatchObject({
      index: 9,
      reason: expect.stringMatching(/malformed/),
    })
    expect((await verifyBundles([{ format: 'something else' }])).ok).toBe(false)
    const badProof = clone(bundle)
    badProof.proofs[0].proof[0] = hash('nope')
    expect((await verifyBundles([badProof])).failures[0].reason).toMatch(/consistency proof/)
    // A checkpoint the auditor saw earlier from a different history makes the bundle fail.
    const fork = await GovernanceLog.open({
      db: await dbs.open(),
      consortiumId: 'credit-club',
      signer: alice,
    })
    for (let i = 0; i < 10; i++)
      await fork.append('policy.change', { policyHash: hash(`fork${i}`), summary: 'fork' })
    const forkNote = await fork.checkpoint()
    const r = await verifyBundles([clone(bundle)], { previousCheckpoints: [forkNote] })
    expect(r.ok).toBe(false)
    expect(r.failures[0].reason).toMatch(/do not hash to the root/)
    const honestNote = (await logs[0].checkpoints())[0]
    expect((await verifyBundles([clone(bundle)], { previousCheckpoints: [honestNote] })).ok).toBe(true)
  })

  it("reports a fork from a witness's evidence, and checks the accused log against it", async () => {
    const honest = await GovernanceLog.open({
      db: await dbs.open(),
      consortiumId: 'credit-club',
      signer: alice,
    })
    for (let i = 0; i < 12; i++)
      await honest.append('policy.change', { policyHash: hash(`p${i}`), summary: 'x' })
    await honest.checkpoint()
    const bobLog = await GovernanceLog.open({
      db: await dbs.open(),
      consortiumId: 'credit-club',
      signer: bob,
    })
    await bobLog.append('policy.change', { policyHash: hash('b'), summary: 'bob' })
    await bobLog.checkpoint()
    const bobW = new Witness({ db: await dbs.open(), signer: bob, members: () => members })
    expect(
      (
        await bobW.witness(
          localLogPeer([honest], () => members),
          honest.origin,
        )
      ).status,
    ).toBe('cosigned')
    const forged = await GovernanceLog.open({
      db: await dbs.open(),
      consortiumId: 'credit-club',
      signer: alice,
    })
    for (let i = 0; i < 20; i++)
      await forged.append('policy.change', { policyHash: hash(`q${i}`), summary: 'x' })
    await forged.checkpoint()
    expect(
      (
        await bobW.witness(
          localLogPeer([forged], () => members),
          forged.origin,
        )
      ).status,
    ).toBe('inconsistent')

    const bobBundle = await exportBundle({ log: bobLog, members, witness: bobW })
    expect(bobBundle.evidence).toHaveLength(1)
    const alone = await verifyBundles([clone(bobBundle)])
    expect(alone.ok).toBe(false)
    expect(alone.failures[0]).toMatchObject({
      origin: honest.origin,
      reason: expect.stringMatching(/bob's witness holds/),
    })
    // Whichever history alice exports, it contradicts one of the two checkpoints she signed.
    for (const log of [honest, forged]) {
      const r = await verifyBundles([await exportBundle({ log, members }), clone(bobBundle)])
      expect(r.ok).toBe(false)
      expect(r.failures[0]).toMatchObject({ bundle: 0, origin: honest.origin })
    }
    // Evidence that does not hold up (a checkpoint altered after signing) is ignored with a warning.
    const bogus = clone(bobBundle)
    ;(bogus.evidence[0] as { later: string }).later = (bogus.evidence[0] as { later: string }).later.replace(
      '\n20\n',
      '\n21\n',
    )
    const r = await verifyBundles([bogus])
    expect(r.ok).toBe(true)
    expect(r.warnings.join()).toMatch(/does not hold up/)
  })
})
