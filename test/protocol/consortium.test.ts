import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import {
  assertInstallable,
  type ConsortiumDocument,
  documentHash,
  newGenesis,
  nextVersion,
  parseConsortiumDocument,
  signDocument,
  verifyDocument,
} from '../../protocol/consortium.ts'

async function members(n: number) {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const key = await generateKeyPair('Ed25519')
      const peerId = peerIdFromPrivateKey(key)
      return {
        key,
        peerId,
        member: { name: `m${i}`, peerId: peerId.toString(), roles: [], addresses: ['/ip4/127.0.0.1/tcp/1'] },
      }
    }),
  )
}

async function signAll(doc: ConsortiumDocument, signers: Awaited<ReturnType<typeof members>>) {
  for (const s of signers) doc = await signDocument(doc, s.key, s.peerId)
  return doc
}

describe('consortium document', () => {
  it('a genesis needs every founding member to sign', async () => {
    const ms = await members(3)
    const doc = newGenesis({ id: 'c1', name: 'test', members: ms.map((m) => m.member) })
    expect(doc.body.threshold).toBe(2)
    const partial = await signAll(doc, ms.slice(0, 2))
    expect(await verifyDocument(partial)).toMatchObject({ ok: false, missing: ['m2'] })
    await expect(assertInstallable(partial)).rejects.toSatisfy((e) =>
      isSyndicateError(e, 'ERR_INVALID_CONSORTIUM'),
    )
    expect((await verifyDocument(await signAll(partial, ms.slice(2)))).ok).toBe(true)
  })

  it('a signature does not survive a change to the body', async () => {
    const ms = await members(2)
    const doc = await signAll(newGenesis({ id: 'c1', name: 'test', members: ms.map((m) => m.member) }), ms)
    const tampered = structuredClone(doc)
    tampered.body.threshold = 1
    expect((await verifyDocument(tampered)).ok).toBe(false)
  })

  it('a successor needs the previous threshold and must chain to the installed version', async () => {
    const ms = await members(4)
    const genesis = await signAll(
      newGenesis({ id: 'c1', name: 't', members: ms.slice(0, 3).map((m) => m.member), threshold: 2 }),
      ms.slice(0, 3),
    )
    const v2 = nextVersion(genesis, { members: ms.map((m) => m.member) })
    expect(v2.body.previous).toBe(documentHash(genesis.body))
    // The joining member's own signature does not count towards the old members' threshold.
    const byNewcomer = await signAll(v2, [ms[3], ms[0]])
    expect(await verifyDocument(byNewcomer, genesis)).toMatchObject({ ok: false, needed: 1 })
    const ok = await signAll(v2, [ms[0], ms[1]])
    expect((await verifyDocument(ok, genesis)).ok).toBe(true)
    // Replaying the successor against another history fails.
    const otherGenesis = await signAll(
      newGenesis({ id: 'c1', name: 't', members: ms.slice(0, 3).map((m) => m.member) }),
      ms.slice(0, 3),
    )
    expect((await verifyDocument(ok, otherGenesis)).reason).toMatch(/does not chain/)
  })

  it('rejects malformed documents with the failing field', () => {
    expect(() => parseConsortiumDocument({ body: { v: 1 }, signatures: [] })).toThrow(
      /consortium document invalid at body\.\w+/,
    )
    expect(() => parseConsortiumDocument('nope')).toThrow(/invalid/)
  })
})
