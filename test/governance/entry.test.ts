import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalBytes } from '../../crypto/canonical.ts'
import {
  type BodyOf,
  checkEntry,
  decodeEntry,
  ENTRY_TYPE_NAMES,
  type EntryType,
  encodeEntry,
  entrySigningBytes,
  type LogEntry,
  MAX_ENTRY_BYTES,
  originOf,
} from '../../governance/entry.ts'
import { memberFromPeerId, toHex } from '../../governance/keys.ts'
import { hash, testSigner } from './helpers.ts'

const alice = testSigner('alice')
const bob = testSigner('bob')
const origin = originOf('credit-club', alice.member.peerId)
const h = hash('x')

const SAMPLES: { [T in EntryType]: { body: BodyOf<T>; jobId?: string } } = {
  'member.join': { body: { member: bob.member, documentHash: h } },
  'member.leave': { body: { peerId: bob.member.peerId, documentHash: h, reason: 'left' } },
  'dataset.register': { body: { datasetId: 'loans-2024', schemaHash: h } },
  'job.propose': {
    body: { specHash: h, kind: 'vertical-lr', proposer: alice.member.peerId, parties: [alice.member.peerId] },
    jobId: 'j1',
  },
  'job.vote': {
    body: { specHash: h, voter: bob.member.peerId, decision: 'reject', reason: 'policy' },
    jobId: 'j1',
  },
  'job.commit': { body: { specHash: h }, jobId: 'j1' },
  'job.start': { body: { specHash: h }, jobId: 'j1' },
  'job.result': { body: { specHash: h, modelHash: h, metrics: { auc: 0.78, ks: 0.41 } }, jobId: 'j1' },
  'job.cancel': { body: { specHash: h, by: bob.member.peerId, reason: 'timeout' }, jobId: 'j1' },
  'job.fail': { body: { specHash: h, party: bob.member.peerId, reason: 'crashed' }, jobId: 'j1' },
  'policy.change': { body: { policyHash: h, summary: 'accept LR jobs from members' } },
  'privacy.spend': { body: { datasetId: 'loans-2024', epsilon: 0.5, delta: 1e-6 }, jobId: 'j1' },
  attestation: { body: { enclaveId: 'enc-1', measurement: h, evidenceHash: h, verdict: 'trusted' } },
  'enclave.destroyed': {
    body: {
      record: {
        v: 1,
        job: 'j1',
        specHash: h,
        instanceId: 'enc-1',
        measurement: h,
        owners: [{ party: 'bank-a', uploadHash: h, rows: 1200 }],
        destroyedAt: 1,
      },
      enclaveKey: 'cd'.repeat(64),
      signature: `${'B'.repeat(86)}==`,
    },
    jobId: 'j1',
  },
}

async function signed(type: EntryType, body: unknown, jobId?: string): Promise<LogEntry> {
  const unsigned = { v: 1 as const, index: 0, time: 1, origin, type, jobId, body, signer: alice.member }
  return { ...unsigned, signature: toHex(await alice.sign(entrySigningBytes(unsigned))) }
}

describe('log entries', () => {
  it('accept every type with its body, and reject unknown fields, wrong job ids and oversize entries', async () => {
    for (const type of ENTRY_TYPE_NAMES) {
      const { body, jobId } = SAMPLES[type]
      const ok = checkEntry(await signed(type, body, jobId))
      expect(ok.ok, type).toBe(true)
      // Strict bodies: an extra field (say, a row of data) is refused.
      expect(checkEntry(await signed(type, { ...body, rows: [[1, 2]] }, jobId)).ok, type).toBe(false)
      if (jobId === undefined && type !== 'attestation')
        expect(checkEntry(await signed(type, body, 'j9')).ok).toBe(false)
      if (jobId !== undefined) expect(checkEntry(await signed(type, body)).ok).toBe(false)
    }
    // The field limits keep the largest legal entry under the byte bound (which is defence in depth).
    const metrics = Object.fromEntries(
      [...Array(64)].map((_, i) => [`${'m'.repeat(62)}${i}`.slice(-64), -Math.PI * 1e-300]),
    )
    const largest = await signed('job.result', { specHash: h, modelHash: h, metrics }, 'x'.repeat(128))
    expect(canonicalBytes(largest).byteLength).toBeLessThan(MAX_ENTRY_BYTES)
    expect(checkEntry(largest).ok).toBe(true)
    expect(
      checkEntry(await signed('job.result', { specHash: h, metrics: { ...metrics, one: 1 } }, 'j1')).ok,
    ).toBe(false)
    const policy = await signed('policy.change', { policyHash: h, summary: 'y'.repeat(1024) })
    expect(checkEntry(policy).ok).toBe(true)
    expect(checkEntry({ ...policy, body: { policyHash: h, summary: 'y'.repeat(1025) } }).ok).toBe(false)
    expect(checkEntry({ ...policy, v: 2 }).ok).toBe(false)
    expect(checkEntry({ ...policy, type: 'job.delete' }).ok).toBe(false)
    expect(checkEntry({ ...policy, origin: 'no-slash' }).ok).toBe(false)
    expect(checkEntry({ ...policy, index: -1 }).ok).toBe(false)
  })

  it('decode only the canonical byte form', async () => {
    const e = await signed('dataset.register', SAMPLES['dataset.register'].body)
    const bytes = canonicalBytes(e)
    expect(decodeEntry(bytes).ok).toBe(true)
    expect(decodeEntry(new TextEncoder().encode(JSON.stringify(e, null, 1))).ok).toBe(false)
    expect(decodeEntry(new Uint8Array([0xff, 0xfe])).ok).toBe(false)
    expect(decodeEntry(new Uint8Array(MAX_ENTRY_BYTES + 1)).ok).toBe(false)
  })

  it('derive member keys from Ed25519 peer ids and refuse mismatched ones', () => {
    expect(memberFromPeerId('alice', alice.member.peerId)).toEqual(alice.member)
    expect(() => memberFromPeerId('bob', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')).toThrow(
      /not an Ed25519/,
    )
  })

  it('encode exactly as canonicalJson, on the fast path (sorted input) and off it', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const want = Buffer.from(canonicalBytes(v)).toString()
        expect(Buffer.from(encodeEntry(v as LogEntry)).toString()).toBe(want)
        // Parsed back from canonical text: keys arrive sorted, the native path is taken, bytes are the same.
        expect(Buffer.from(encodeEntry(JSON.parse(want) as LogEntry)).toString()).toBe(want)
      }),
      { numRuns: 300 },
    )
  })
})
