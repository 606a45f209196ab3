import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { canonicalBytes } from '../../crypto/canonical.ts'
import { exportBundle } from '../../governance/bundle.ts'
import { fromHex } from '../../governance/keys.ts'
import { GovernanceLog } from '../../governance/log.ts'
import { leafHash, verifyConsistency, verifyInclusion } from '../../governance/merkle.ts'
import { localLogPeer, Witness } from '../../governance/witness.ts'
import { readMembers, runAuditVerify } from '../../node/services/audit/cli.ts'
import { auditRoutes } from '../../node/services/audit/routes.ts'
import { hash, testSigner, useTempDbs } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const members = [alice.member, bob.member]

const dbs = useTempDbs()
let dir: string
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'syndicate-audit-'))
})
afterEach(async () => {
  rmSync(dir, { recursive: true, force: true })
})

async function witnessedLog(n: number) {
  const log = await GovernanceLog.open({ db: await dbs.open(), consortiumId: 'credit-club', signer: alice })
  const witness = new Witness({ db: await dbs.open(), signer: bob, members: () => members })
  for (let i = 0; i < n; i++)
    await log.append('dataset.register', { datasetId: `d${i}`, schemaHash: hash(`${i}`) })
  await log.checkpoint()
  expect(
    (
      await witness.witness(
        localLogPeer([log], () => members),
        log.origin,
      )
    ).status,
  ).toBe('cosigned')
  return log
}

describe('audit HTTP routes', () => {
  it('serve entries, proofs and the cosigned checkpoint, all verifiable', async () => {
    const log = await witnessedLog(25)
    await log.append('policy.change', { policyHash: hash('p'), summary: 'after the checkpoint' })
    const app = auditRoutes({ log, members: () => members })
    const get = async (path: string) => {
      const res = await app.request(path)
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    const cp = (await get('/checkpoint')).body as {
      size: number
      root: string
      cosigners: Array<{ name: string }>
    }
    expect(cp.size).toBe(25)
    expect(cp.cosigners.map((c) => c.name)).toEqual(['bob'])

    const page = (await get('/entries?start=20&end=26')).body as { entries: Array<{ index: number }> }
    expect(page.entries.map((e) => e.index)).toEqual([20, 21, 22, 23, 24, 25])

    // The proof defaults to the checkpointed tree, so it verifies against the signed root.
    const inc = (await get('/entries/7/proof')).body as {
      entry: unknown
      size: number
      proof: string[]
      leafHash: string
    }
    expect(inc.size).toBe(25)
    const leaf = leafHash(canonicalBytes(inc.entry))
    expect(Buffer.from(leaf).toString('hex')).toBe(inc.leafHash)
    expect(verifyInclusion(7, 25, leaf, inc.proof.map(fromHex), fromHex(cp.root))).toBe(true)

    const cons = (await get('/consistency?from=25&to=26')).body as {
      proof: string[]
      fromRoot: string
      toRoot: string
    }
    expect(cons.fromRoot).toBe(cp.root)
    expect(
      verifyConsistency(25, 26, cons.proof.map(fromHex), fromHex(cons.fromRoot), fromHex(cons.toRoot)),
    ).toBe(true)

    // Bad parameters are clear errors, not crashes.
    expect((await get('/entries?start=abc')).status).toBe(400)
    expect((await get('/entries/99/proof')).status).toBe(404)
    expect((await get('/consistency?from=30')).status).toBe(404)
    const err = (await get('/entries?start=-1')).body as { error: { code: string } }
    expect(err.error.code).toBe('ERR_GOV_QUERY')
    // A page is capped at the log's end.
    expect(((await get('/entries?start=0&end=5000')).body.entries as unknown[]).length).toBe(26)
    const bundle = (await get('/export')).body as { entries: unknown[] }
    expect(bundle.entries).toHaveLength(26)
  })
})

describe('syndicate audit verify', () => {
  it('prints what it checked and exits 0 for a good bundle, 1 naming the bad entry otherwise', async () => {
    const log = await witnessedLog(12)
    const bundle = await exportBundle({ log, members })
    const good = join(dir, 'alice.json')
    writeFileSync(good, JSON.stringify(bundle))
    const membersFile = join(dir, 'consortium.json')
    // The lead's consortium document format: members without keys (Ed25519 peer ids carry them).
    writeFileSync(
      membersFile,
      JSON.stringify({ body: { members: members.map((m) => ({ name: m.name, peerId: m.peerId })) } }),
    )
    expect(readMembers(membersFile)).toEqual(members)
    let out = ''
    expect(
      await runAuditVerify([good], { members: membersFile, minCosignatures: 1 }, (t) => (out += t)),
    ).toBe(0)
    expect(out).toMatch(/ok {2}members: 2 keys/)
    expect(out).toMatch(/12 entries well-formed/)
    expect(out).toMatch(/^OK: 12 entries/m)

    const tampered = structuredClone(bundle)
    ;(tampered.entries[4] as { body: { datasetId: string } }).body.datasetId = 'renamed'
    const bad = join(dir, 'tampered.json')
    writeFileSync(bad, JSON.stringify(tampered))
    out = ''
    expect(await runAuditVerify([bad], {}, (t) => (out += t))).toBe(1)
    expect(out).toMatch(/FAIL {2}.*tampered\.json .*: entry 4: the entry signature does not verify/)

    out = ''
    writeFileSync(join(dir, 'junk.json'), 'not json')
    expect(await runAuditVerify([good, join(dir, 'junk.json')], {}, (t) => (out += t))).toBe(1)
    expect(out).toMatch(/junk\.json: cannot read a JSON bundle/)
  })
})
