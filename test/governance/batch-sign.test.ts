import { describe, expect, it } from 'vitest'
import {
  batchSigner,
  MAX_BATCH,
  MAX_SIGNATURE_BYTES,
  signMessages,
  verifyBatchSignature,
  verifyBatchSignatureAsync,
} from '../../governance/batch-sign.ts'
import { verifySignature } from '../../governance/keys.ts'
import { testSigner } from './helpers.ts'

const alice = testSigner('alice')
const mallory = testSigner('mallory')
const text = new TextEncoder()
const messages = (n: number, tag = 'm') => Array.from({ length: n }, (_, i) => text.encode(`${tag} ${i}`))

/** alice's signer, counting the Ed25519 signatures it makes. */
function counted() {
  const calls = { n: 0 }
  const sign = (m: Uint8Array) => {
    calls.n++
    return alice.sign(m)
  }
  return { calls, sign }
}

describe('batch signatures', () => {
  it('signs the messages of one turn with one signature; each verifies alone', async () => {
    const { calls, sign } = counted()
    const signer = batchSigner(sign)
    const msgs = messages(MAX_BATCH)
    const sigs = await Promise.all(msgs.map((m) => signer(m)))
    expect(calls.n).toBe(1)
    for (const [i, m] of msgs.entries()) {
      expect(sigs[i].byteLength).toBeLessThanOrEqual(MAX_SIGNATURE_BYTES)
      expect(verifyBatchSignature(alice.member.publicKey, m, sigs[i])).toBe(true)
      expect(await verifyBatchSignatureAsync(alice.member.publicKey, m, sigs[i])).toBe(true)
    }
    // A message signed alone gets a plain Ed25519 signature, checkable by any Ed25519 verifier.
    const [single] = await signMessages(sign, [text.encode('alone')])
    expect(single.byteLength).toBe(64)
    expect(verifySignature(alice.member.publicKey, text.encode('alone'), single)).toBe(true)
  })

  it('fails an altered message alone, and any signature moved to another message or key', async () => {
    const msgs = messages(9)
    const sigs = await signMessages(alice.sign, msgs)
    const altered = text.encode('m 4!')
    expect(verifyBatchSignature(alice.member.publicKey, altered, sigs[4])).toBe(false)
    expect(await verifyBatchSignatureAsync(alice.member.publicKey, altered, sigs[4])).toBe(false)
    for (const i of [0, 3, 5, 8])
      expect(verifyBatchSignature(alice.member.publicKey, msgs[i], sigs[i])).toBe(true)
    // Another message's signature (a different path) and another key do not verify.
    expect(verifyBatchSignature(alice.member.publicKey, msgs[2], sigs[3])).toBe(false)
    expect(verifyBatchSignature(mallory.member.publicKey, msgs[2], sigs[2])).toBe(false)
    // The root signature alone is not a plain signature of the message.
    expect(verifyBatchSignature(alice.member.publicKey, msgs[2], sigs[2].subarray(0, 64))).toBe(false)
  })

  it('a verified batch root vouches for its other messages only under its exact signature bytes', async () => {
    const pub = alice.member.publicKey
    const msgs = messages(8, 'cached')
    const sigs = await signMessages(alice.sign, msgs)
    // Remembers the batch's root: the other messages then cost no Ed25519 check.
    expect(verifyBatchSignature(pub, msgs[0], sigs[0])).toBe(true)
    const forged = Uint8Array.from(sigs[1])
    forged[0] ^= 1
    expect(verifyBatchSignature(pub, msgs[1], forged)).toBe(false)
    expect(await verifyBatchSignatureAsync(pub, msgs[1], forged)).toBe(false)
    expect(verifyBatchSignature(mallory.member.publicKey, msgs[1], sigs[1])).toBe(false)
    expect(verifyBatchSignature(pub, text.encode('cached 99'), sigs[1])).toBe(false)
    for (const i of [1, 7]) {
      expect(verifyBatchSignature(pub, msgs[i], sigs[i])).toBe(true)
      expect(await verifyBatchSignatureAsync(pub, msgs[i], sigs[i])).toBe(true)
    }
  })

  it('refuses malformed signatures: wrong index, size, path length or a flipped path byte', async () => {
    const msgs = messages(6)
    const sigs = await signMessages(alice.sign, msgs)
    const with_ = (i: number, edit: (s: Uint8Array, v: DataView) => void) => {
      const s = sigs[i].slice()
      edit(s, new DataView(s.buffer))
      return s
    }
    const pk = alice.member.publicKey
    expect(
      verifyBatchSignature(
        pk,
        msgs[1],
        with_(1, (_, v) => v.setUint32(64, 2)),
      ),
    ).toBe(false)
    expect(
      verifyBatchSignature(
        pk,
        msgs[1],
        with_(1, (_, v) => v.setUint32(68, 7)),
      ),
    ).toBe(false)
    expect(
      verifyBatchSignature(
        pk,
        msgs[1],
        with_(1, (_, v) => v.setUint32(68, MAX_BATCH + 1)),
      ),
    ).toBe(false)
    expect(
      verifyBatchSignature(
        pk,
        msgs[1],
        with_(1, (s) => (s[s.length - 1] ^= 1)),
      ),
    ).toBe(false)
    expect(verifyBatchSignature(pk, msgs[1], sigs[1].subarray(0, sigs[1].length - 32))).toBe(false)
    expect(verifyBatchSignature(pk, msgs[1], sigs[1].subarray(0, 70))).toBe(false)
    expect(await verifyBatchSignatureAsync(pk, msgs[1], new Uint8Array(0))).toBe(false)
  })

  it(`splits more than ${MAX_BATCH} messages over several signatures`, async () => {
    const { calls, sign } = counted()
    const msgs = messages(MAX_BATCH + 5, 'big')
    const sigs = await signMessages(sign, msgs)
    expect(calls.n).toBe(2)
    expect(verifyBatchSignature(alice.member.publicKey, msgs[MAX_BATCH + 4], sigs[MAX_BATCH + 4])).toBe(true)
    expect(verifyBatchSignature(alice.member.publicKey, msgs[17], sigs[17])).toBe(true)
  })

  it('a failed signature rejects every message of its batch', async () => {
    const signer = batchSigner(() => Promise.reject(new Error('signing device offline')))
    const results = await Promise.allSettled(messages(3).map((m) => signer(m)))
    expect(results.every((r) => r.status === 'rejected')).toBe(true)
  })
})
