import { describe, expect, it } from 'vitest'
import {
  memberDirectory,
  parseCheckpointBody,
  parseNote,
  verifyCheckpointNote,
} from '../../governance/checkpoint.ts'
import { fromHex } from '../../governance/keys.ts'
import { GovernanceLog } from '../../governance/log.ts'
import { verifyConsistency } from '../../governance/merkle.ts'
import { type LogPeer, localLogPeer, Witness } from '../../governance/witness.ts'
import { hash, testSigner, useTempDbs } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const carol = testSigner('carol')
const mallory = testSigner('mallory')
const members = [alice.member, bob.member, carol.member]
const dir = memberDirectory(members)

const dbs = useTempDbs()

async function aliceLog() {
  return GovernanceLog.open({ db: await dbs.open(), consortiumId: 'credit-club', signer: alice })
}

async function fill(log: GovernanceLog, from: number, to: number, tag = '') {
  for (let i = from; i < to; i++) {
    await log.append('dataset.register', { datasetId: `ds-${i}${tag}`, schemaHash: hash(`schema ${i}`) })
  }
}

async function witnessFor(signer = bob) {
  return new Witness({ db: await dbs.open(), signer, members: () => members })
}

describe('Witness', () => {
  it('cosigns consistent growth, and the owner stores the cosignatures', async () => {
    const log = await aliceLog()
    const peer = localLogPeer([log], () => members)
    const bobW = await witnessFor(bob)
    const carolW = await witnessFor(carol)
    await fill(log, 0, 10)
    await log.checkpoint()
    for (const w of [bobW, carolW]) expect((await w.witness(peer, log.origin)).status).toBe('cosigned')
    await fill(log, 10, 37)
    await log.checkpoint()
    const r = await bobW.witness(peer, log.origin)
    expect(r.status).toBe('cosigned')
    if (r.status === 'cosigned') expect(r.delivered).toBe(true)
    await carolW.witness(peer, log.origin)
    const stored = verifyCheckpointNote((await log.latestCheckpoint())!, dir)
    expect(stored.checkpoint.size).toBe(37)
    expect(stored.cosigners.map((c) => c.member.name).sort()).toEqual(['bob', 'carol'])
    expect((await log.checkpoints()).map((n) => verifyCheckpointNote(n, dir).cosigners.length)).toEqual([
      2, 2,
    ])
    // Seeing the same checkpoint again is fine; an older consistent one is reported stale and not cosigned.
    expect((await bobW.witness(peer, log.origin)).status).toBe('cosigned')
    const older = (await log.checkpoints())[0]
    expect((await bobW.observe(older, peer, log.origin)).status).toBe('stale')
    expect(await bobW.evidence()).toEqual([])
  })

  it('detects a rewritten history and keeps the signed evidence', async () => {
    const honest = await aliceLog()
    await fill(honest, 0, 12)
    await honest.checkpoint()
    const bobW = await witnessFor(bob)
    expect(
      (
        await bobW.witness(
          localLogPeer([honest], () => members),
          honest.origin,
        )
      ).status,
    ).toBe('cosigned')

    // Alice rebuilds her log with entry 5 changed and more entries after it, then presents the new history.
    const forged = await aliceLog()
    await fill(forged, 0, 5)
    await forged.append('dataset.register', { datasetId: 'ds-5-rewritten', schemaHash: hash('other') })
    await fill(forged, 6, 20)
    await forged.checkpoint()
    const r = await bobW.witness(
      localLogPeer([forged], () => members),
      forged.origin,
    )
    expect(r.status).toBe('inconsistent')
    if (r.status !== 'inconsistent') return
    expect(r.evidence.kind).toBe('consistency-proof-failed')

    // The evidence convinces a third party on its own: both checkpoints carry Alice's signature, and the
    // proof the log served does not connect them.
    const [evidence] = await bobW.evidence(honest.origin)
    const a = verifyCheckpointNote(evidence.earlier, dir).checkpoint
    const b = verifyCheckpointNote(evidence.later, dir).checkpoint
    expect([a.size, b.size]).toEqual([12, 20])
    expect(verifyConsistency(a.size, b.size, evidence.proof.map(fromHex), a.root, b.root)).toBe(false)

    // Once flagged, the log is never cosigned again, even if it serves a consistent-looking checkpoint.
    expect(
      (
        await bobW.witness(
          localLogPeer([honest], () => members),
          honest.origin,
        )
      ).status,
    ).toBe('flagged')
    expect(await bobW.lastSeen(honest.origin)).toContain('\n12\n')
  })

  it('flags two checkpoints of the same size with different roots', async () => {
    const honest = await aliceLog()
    await fill(honest, 0, 8)
    await honest.checkpoint()
    const forked = await aliceLog()
    await fill(forked, 0, 8, '-fork')
    await forked.checkpoint()
    const carolW = await witnessFor(carol)
    expect(
      (
        await carolW.witness(
          localLogPeer([honest], () => members),
          honest.origin,
        )
      ).status,
    ).toBe('cosigned')
    const r = await carolW.witness(
      localLogPeer([forked], () => members),
      forked.origin,
    )
    expect(r.status).toBe('inconsistent')
    if (r.status === 'inconsistent') {
      expect(r.evidence.kind).toBe('same-size-different-root')
      const roots = [r.evidence.earlier, r.evidence.later].map(
        (n) => parseCheckpointBody(parseNote(n).body).root,
      )
      expect(Buffer.from(roots[0]).equals(Buffer.from(roots[1]))).toBe(false)
    }
    expect(await carolW.evidence(honest.origin)).toHaveLength(1)
  })

  it('rejects checkpoints by non-members, garbage and a peer that fails, and stays usable', async () => {
    const log = await aliceLog()
    await fill(log, 0, 4)
    await log.checkpoint()
    const bobW = await witnessFor(bob)
    const outsider = await GovernanceLog.open({
      db: await dbs.open(),
      consortiumId: 'credit-club',
      signer: mallory,
    })
    await fill(outsider, 0, 2)
    await outsider.checkpoint()
    const garbage: LogPeer = {
      latestCheckpoint: async () => 'not a checkpoint\n\n\u2014 x AAAA\n',
      consistencyProof: async () => [],
      entries: async () => [],
    }
    const failing: LogPeer = {
      latestCheckpoint: async () => {
        throw new Error('connection reset')
      },
      consistencyProof: async () => [],
      entries: async () => [],
    }
    expect(
      (
        await bobW.witness(
          localLogPeer([outsider], () => members),
          outsider.origin,
        )
      ).status,
    ).toBe('rejected')
    expect((await bobW.witness(garbage, log.origin)).status).toBe('rejected')
    expect((await bobW.witness(failing, log.origin)).status).toBe('rejected')
    // A checkpoint of another origin than asked for is not accepted in its place.
    expect(
      (
        await bobW.witness(
          localLogPeer([log], () => members),
          `credit-club/${carol.member.peerId}`,
        )
      ).status,
    ).toBe('rejected')
    expect(
      (
        await bobW.witness(
          localLogPeer([log], () => members),
          log.origin,
        )
      ).status,
    ).toBe('cosigned')
    // A log must serve a valid proof between two checkpoints it signed; one that does not is flagged.
    await fill(log, 4, 9)
    await log.checkpoint()
    const lying: LogPeer = {
      ...localLogPeer([log], () => members),
      consistencyProof: async () => [new Uint8Array(32)],
    }
    const r = await bobW.witness(lying, log.origin)
    expect(r.status).toBe('inconsistent')
  })

  it('with verifyEntries, checks every new entry once and refuses altered ones', async () => {
    const log = await aliceLog()
    const honest = localLogPeer([log], () => members)
    const asked: Array<[number, number]> = []
    const counting: LogPeer = {
      ...honest,
      entries: (origin, start, end) => {
        asked.push([start, end])
        return honest.entries(origin, start, end)
      },
    }
    const w = new Witness({
      db: await dbs.open(),
      signer: carol,
      members: () => members,
      verifyEntries: true,
    })
    await fill(log, 0, 1500)
    await log.checkpoint()
    expect((await w.witness(counting, log.origin)).status).toBe('cosigned')
    await fill(log, 1500, 1510)
    await log.checkpoint()
    expect((await w.witness(counting, log.origin)).status).toBe('cosigned')
    expect(asked).toEqual([
      [0, 1000],
      [1000, 1500],
      [1500, 1510],
    ])

    // A log that serves an entry other than the one it signed is refused, naming the entry.
    await fill(log, 1510, 1520)
    await log.checkpoint()
    const tampering: LogPeer = {
      ...honest,
      entries: async (origin, start, end) =>
        (await honest.entries(origin, start, end)).map((b, i) =>
          start + i === 1514
            ? new TextEncoder().encode(new TextDecoder().decode(b).replace('ds-1514', 'ds-9999'))
            : b,
        ),
    }
    const r = await w.witness(tampering, log.origin)
    expect(r).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/entry 1514: .*signature/) })
    expect(await w.lastSeen(log.origin)).toContain('\n1510\n')
  })
})
