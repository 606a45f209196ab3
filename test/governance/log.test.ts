import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../../crypto/canonical.ts'
import { isSyndicateError } from '../../crypto/errors.ts'
import { verifyBatchSignature } from '../../governance/batch-sign.ts'
import { exportBundle } from '../../governance/bundle.ts'
import { memberDirectory, verifyCheckpointNote } from '../../governance/checkpoint.ts'
import { decodeEntry, entrySigningBytes } from '../../governance/entry.ts'
import { fromHex, memberFromPeerId, signerFromSeed } from '../../governance/keys.ts'
import { GovernanceLog } from '../../governance/log.ts'
import { leafHash, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../../governance/merkle.ts'
import { entryKey, openStore } from '../../governance/store.ts'
import { verifyBundles } from '../../governance/verify.ts'
import { hash, testSigner, useTempDbs } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const members = [alice.member, bob.member]

const dbs = useTempDbs()

async function openLog(db?: Awaited<ReturnType<typeof dbs.open>>) {
  return GovernanceLog.open({ db: db ?? (await dbs.open()), consortiumId: 'credit-club', signer: alice })
}

describe('GovernanceLog', () => {
  it('keeps a dense index under concurrent appends and a root equal to the full recomputation', async () => {
    const log = await openLog()
    const appends = Array.from({ length: 40 }, (_, i) =>
      log.append('dataset.register', { datasetId: `ds-${i}`, schemaHash: hash(`schema ${i}`) }),
    )
    const entries = await Promise.all(appends)
    expect(entries.map((e) => e.index).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    expect(log.size).toBe(40)
    const raw = await log.rawEntries(0, 40)
    expect(Buffer.from(log.root()).toString('hex')).toBe(
      Buffer.from(rootFromLeafHashes(raw.map(leafHash))).toString('hex'),
    )
    const signatures = new Set<string>()
    for (const [i, bytes] of raw.entries()) {
      const d = decodeEntry(bytes)
      expect(d.ok).toBe(true)
      if (!d.ok) continue
      expect(d.entry.index).toBe(i)
      expect(
        verifyBatchSignature(alice.member.publicKey, entrySigningBytes(d.entry), fromHex(d.entry.signature)),
      ).toBe(true)
      signatures.add(d.entry.signature.slice(0, 128))
    }
    // Concurrent appends are committed as groups, each group under one Ed25519 signature of its Merkle root.
    expect(signatures.size).toBeLessThan(40)
    // Time never goes backwards within a log.
    const times = (await log.entries(0, 40)).map((e) => e.time)
    expect(times).toEqual([...times].sort((a, b) => a - b))
  })

  it('stores each entry as the canonical JSON of the entry it returns, whatever text its body holds', async () => {
    const log = await openLog()
    const reason = 'a reason that reads ,"signer":{"name":"mallory"}, "signature":"00" and \u2028 é'
    const [failed, registered] = await Promise.all([
      log.append('job.fail', { specHash: hash('spec'), reason }, { jobId: 'job-1' }),
      log.append('dataset.register', { datasetId: 'ds', schemaHash: hash('schema') }),
    ])
    const raw = await log.rawEntries(0, 2)
    for (const [i, entry] of [failed, registered].entries()) {
      const d = decodeEntry(raw[i])
      expect(d.ok && d.entry).toEqual(entry)
      expect(Buffer.from(raw[i]).toString()).toBe(canonicalJson(entry))
    }
  })

  it('survives a restart with the same size, root and continuing indices', async () => {
    const db = await dbs.open()
    const log = await openLog(db)
    for (let i = 0; i < 13; i++)
      await log.append('policy.change', { policyHash: hash(`p${i}`), summary: `rule ${i}` })
    const root = Buffer.from(log.root()).toString('hex')
    const again = await openLog(await dbs.reopen(db))
    expect(again.size).toBe(13)
    expect(Buffer.from(again.root()).toString('hex')).toBe(root)
    const next = await again.append('job.start', { specHash: hash('spec') }, { jobId: 'job-1' })
    expect(next.index).toBe(13)
  })

  it('serves inclusion and consistency proofs that verify against its signed checkpoints', async () => {
    const log = await openLog()
    const notes: string[] = []
    for (let i = 0; i < 70; i++) {
      await log.append(
        'job.vote',
        { specHash: hash('s'), voter: bob.member.peerId, decision: 'accept' },
        { jobId: `j${i}` },
      )
      if (i % 23 === 5) notes.push(await log.checkpoint())
    }
    notes.push(await log.checkpoint())
    const cps = notes.map((n) => verifyCheckpointNote(n, memberDirectory(members)).checkpoint)
    for (const cp of cps) {
      expect(Buffer.from(await log.rootAt(cp.size)).equals(Buffer.from(cp.root))).toBe(true)
      for (const index of [0, Math.floor(cp.size / 2), cp.size - 1]) {
        const { leafHash: leaf, proof } = await log.inclusionProof(index, cp.size)
        expect(verifyInclusion(index, cp.size, leaf, proof, cp.root)).toBe(true)
      }
    }
    for (let i = 0; i + 1 < cps.length; i++) {
      const proof = await log.consistencyProof(cps[i].size, cps[i + 1].size)
      expect(verifyConsistency(cps[i].size, cps[i + 1].size, proof, cps[i].root, cps[i + 1].root)).toBe(true)
    }
    // Checkpointing an unchanged tree returns the stored checkpoint instead of signing a second one.
    expect(await log.checkpoint()).toBe(notes.at(-1))
    expect((await log.checkpoints()).length).toBe(notes.length)
  })

  it('commits concurrent appends as a group: a refused entry fails alone and leaves no gap', async () => {
    const log = await openLog()
    const results = await Promise.allSettled([
      log.append('dataset.register', { datasetId: 'a', schemaHash: hash('a') }),
      // A valid body, but job.start needs a job id: refused when the group is assembled.
      log.append('job.start', { specHash: hash('x') }),
      log.append('job.start', { specHash: hash('y') }, { jobId: 'job-7' }),
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(isSyndicateError((results[1] as PromiseRejectedResult).reason, 'ERR_GOV_ENTRY')).toBe(true)
    expect(results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.index] : []))).toEqual([0, 1])
    expect(log.size).toBe(2)
    const raw = await log.rawEntries(0, 2)
    expect(raw.map((b) => decodeEntry(b).ok)).toEqual([true, true])
    expect(Buffer.from(log.root()).equals(Buffer.from(rootFromLeafHashes(raw.map(leafHash))))).toBe(true)
  })

  it('writes nothing of a group whose signing fails, and carries on with the next', async () => {
    let failing = true
    const flaky = {
      member: alice.member,
      sign: (m: Uint8Array) =>
        failing ? Promise.reject(new Error('signing device offline')) : alice.sign(m),
    }
    const log = await GovernanceLog.open({ db: await dbs.open(), consortiumId: 'credit-club', signer: flaky })
    const group = await Promise.allSettled(
      [1, 2, 3].map((i) => log.append('dataset.register', { datasetId: `d${i}`, schemaHash: hash(`${i}`) })),
    )
    expect(group.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected'])
    expect(log.size).toBe(0)
    failing = false
    const next = await log.append('dataset.register', { datasetId: 'd4', schemaHash: hash('4') })
    expect(next.index).toBe(0)
    expect(decodeEntry((await log.rawEntries(0, 1))[0]).ok).toBe(true)
  })

  it('refuses bodies outside the schema and writes nothing', async () => {
    const log = await openLog()
    const reject = async (p: Promise<unknown>) => {
      const e = await p.then(
        () => undefined,
        (err: unknown) => err,
      )
      expect(isSyndicateError(e, 'ERR_GOV_ENTRY')).toBe(true)
    }
    // A field the schema does not know (raw data has no place in an entry).
    await reject(
      log.append('dataset.register', {
        datasetId: 'd',
        schemaHash: hash('x'),
        rows: [[1, 2, 3]],
      } as unknown as { datasetId: string; schemaHash: string }),
    )
    await reject(log.append('job.start', { specHash: hash('x') }))
    await reject(log.append('dataset.register', { datasetId: 'd', schemaHash: 'not-a-hash' }))
    await reject(log.append('policy.change', { policyHash: hash('p'), summary: 'x'.repeat(9000) }))
    // A body that cannot be walked fails alone, in a group with a good one, and the log carries on.
    const cyclic: Record<string, unknown> = { policyHash: hash('c'), summary: 'c' }
    cyclic.self = cyclic
    const [bad, good] = await Promise.allSettled([
      log.append('policy.change', cyclic as unknown as { policyHash: string; summary: string }),
      log.append('policy.change', { policyHash: hash('ok'), summary: 'fine' }),
    ])
    expect(bad.status === 'rejected' && isSyndicateError(bad.reason, 'ERR_GOV_ENTRY')).toBe(true)
    expect(good.status === 'fulfilled' && good.value.index).toBe(0)
    expect(log.size).toBe(1)
  })

  it('names the index of an entry whose stored bytes were altered', async () => {
    const db = await dbs.open()
    const log = await openLog(db)
    for (let i = 0; i < 9; i++)
      await log.append('dataset.register', { datasetId: `d${i}`, schemaHash: hash(`${i}`) })
    const store = openStore(db)
    const bytes = (await store.get(entryKey(6)))!
    const altered = new TextEncoder().encode(new TextDecoder().decode(bytes).replace('"d6"', '"d7"'))
    await store.put(entryKey(6), altered)
    const err = await log.entries(0, 9).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isSyndicateError(err, 'ERR_GOV_STORE_CORRUPT')).toBe(true)
    expect((err as { details: { index: number } }).details.index).toBe(6)
    await expect(log.entries(0, 6)).resolves.toHaveLength(6)
  })

  it("works with the node's libp2p identity key as signer", async () => {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key).toString()
    const signer = { member: memberFromPeerId('node-a', peerId), sign: (m: Uint8Array) => key.sign(m) }
    // libp2p's 64-byte raw private key gives the same member through signerFromSeed.
    expect(signerFromSeed('node-a', key.raw).member).toEqual(signer.member)
    const log = await GovernanceLog.open({ db: await dbs.open(), consortiumId: 'credit-club', signer })
    await log.append('dataset.register', { datasetId: 'd', schemaHash: hash('s') })
    await log.checkpoint()
    const report = await verifyBundles([await exportBundle({ log, members: [signer.member] })], {
      signatures: 'all',
    })
    expect(report.ok).toBe(true)
  })
})
