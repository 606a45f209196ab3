import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import {
  addSignatureLines,
  cosignLine,
  formatCheckpoint,
  keyId,
  memberDirectory,
  parseCheckpointBody,
  parseNote,
  signCheckpoint,
  verifyCheckpointNote,
} from '../../governance/checkpoint.ts'
import { originOf } from '../../governance/entry.ts'
import { signerFromSeed, toHex } from '../../governance/keys.ts'
import { leafHash } from '../../governance/merkle.ts'
import { testSigner } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const carol = testSigner('carol')
const mallory = testSigner('mallory')
const dir = memberDirectory([alice.member, bob.member, carol.member])
const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'))

// Known answers from golang.org/x/mod/sumdb/note (note_test.go) and transparency-dev/formats
// (note_cosigv1_test.go): the signed-note format our checkpoints use.
const PETER_SKEY = 'AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz'
const PETER_VKEY = 'ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'
const PETER_TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
const PETER_SIG =
  'x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM='

describe('signed notes: known answers', () => {
  it('computes C2SP key ids and reproduces the Go reference signature', async () => {
    const pub = toHex(b64(PETER_VKEY).subarray(1))
    expect(toHex(keyId('PeterNeumann', 0x01, pub))).toBe('c74f20a3')
    const cosigner = toHex(b64('BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2').subarray(1))
    expect(toHex(keyId('remora.n621.de', 0x04, cosigner))).toBe('da77ade7')
    // Ed25519 is deterministic: the same seed and text give the published signature.
    const peter = signerFromSeed('PeterNeumann', b64(PETER_SKEY).subarray(1))
    expect(peter.member.publicKey).toBe(pub)
    const sig = await peter.sign(new TextEncoder().encode(PETER_TEXT))
    expect(Buffer.concat([keyId('PeterNeumann', 0x01, pub), sig]).toString('base64')).toBe(PETER_SIG)
    const parsed = parseNote(`${PETER_TEXT}\n\u2014 PeterNeumann ${PETER_SIG}\n`)
    expect(parsed.body).toBe(PETER_TEXT)
    expect(parsed.signatures[0].name).toBe('PeterNeumann')
    expect(toHex(parsed.signatures[0].keyId)).toBe('c74f20a3')
  })
})

describe('checkpoints', () => {
  const origin = originOf('credit-club', alice.member.peerId)
  const cp = { origin, size: 42, root: leafHash(new Uint8Array([1])), timestamp: 1_760_000_000_000 }

  it('round-trip the text form and verify the owner signature', async () => {
    expect(parseCheckpointBody(formatCheckpoint(cp))).toEqual(cp)
    const note = await signCheckpoint(cp, alice)
    const v = verifyCheckpointNote(note, dir)
    expect(v.checkpoint).toEqual(cp)
    expect(v.cosigners).toEqual([])
    // Any change to the body breaks the owner's signature.
    expect(() => verifyCheckpointNote(note.replace('\n42\n', '\n43\n'), dir)).toThrow(/no valid signature/)
    // Only the owner signs its log's checkpoints.
    await expect(signCheckpoint(cp, bob)).rejects.toThrow(/only the owner/)
    const byBob = await signCheckpoint({ ...cp, origin: originOf('credit-club', bob.member.peerId) }, bob)
    expect(() => verifyCheckpointNote(byBob.replace(bob.member.peerId, alice.member.peerId), dir)).toThrow()
  })

  it('keeps member cosignatures and ignores the rest', async () => {
    const note = await signCheckpoint(cp, alice)
    const body = parseNote(note).body
    const lines = await Promise.all([
      cosignLine(body, bob, 1_760_000_100),
      cosignLine(body, carol, 1_760_000_200),
      cosignLine(body, mallory, 1_760_000_300),
      cosignLine(body, alice, 1_760_000_400),
    ])
    // A cosignature of a different checkpoint does not transfer.
    const other = parseNote(await signCheckpoint({ ...cp, size: 41 }, alice)).body
    const wrongBody = await cosignLine(other, carol, 1_760_000_500)
    const v = verifyCheckpointNote(addSignatureLines(note, [wrongBody, ...lines]), dir)
    expect(v.cosigners.map((c) => [c.member.name, c.timestamp])).toEqual([
      ['bob', 1_760_000_100],
      ['carol', 1_760_000_200],
    ])
    // mallory (not a member), alice (the owner cannot witness herself), carol's line for size 41.
    expect(v.ignored).toHaveLength(3)
    // The verified note keeps only the lines that verified, and verifies again as it is.
    expect(verifyCheckpointNote(v.note, dir).cosigners).toHaveLength(2)
    expect(v.note).not.toContain(mallory.member.peerId)
  })

  it('rejects malformed notes with a SyndicateError, never anything else', () => {
    for (const bad of [
      '',
      'x\n\n',
      `${origin}\n42\nAAAA\ntimestamp 1\n\n\u2014 a AAAAAAA=\n`,
      `${origin}\n-1\n${Buffer.alloc(32).toString('base64')}\ntimestamp 1\n\n\u2014 a AAAAAAA=\n`,
      `${origin}\n01\n${Buffer.alloc(32).toString('base64')}\ntimestamp 1\n\n\u2014 a AAAAAAA=\n`,
    ]) {
      expect(() => verifyCheckpointNote(bad, dir)).toThrow(
        expect.objectContaining({ code: 'ERR_GOV_CHECKPOINT' }),
      )
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          verifyCheckpointNote(s, dir)
          return false
        } catch (e) {
          return isSyndicateError(e)
        }
      }),
      { numRuns: 300 },
    )
  })
})
