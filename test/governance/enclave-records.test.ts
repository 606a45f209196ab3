import { ed25519 } from '@noble/curves/ed25519.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { describe, expect, it } from 'vitest'
import { signingBytes } from '../../crypto/canonical.ts'
import { exportBundle } from '../../governance/bundle.ts'
import { GovernanceLog } from '../../governance/log.ts'
import { verifyBundles } from '../../governance/verify.ts'
import { hash, testSigner, useTempDbs } from './helpers.ts'

/** The audit check of enclave jobs: every party logs the same "destroyed" record, signed by the enclave. */
const alice = testSigner('alice')
const bob = testSigner('bob')
const members = [alice.member, bob.member]
const dbs = useTempDbs()

const enclaveSecret = ed25519.utils.randomSecretKey()
const enclaveKey = bytesToHex(new Uint8Array(32)) + bytesToHex(ed25519.getPublicKey(enclaveSecret))
const record = (destroyedAt: number) => ({
  v: 1 as const,
  job: 'j1',
  specHash: hash('spec'),
  instanceId: 'enclave-1',
  measurement: hash('build'),
  owners: [{ party: 'alice', uploadHash: hash('upload'), rows: 30000 }],
  destroyedAt,
})
const signed = (r: ReturnType<typeof record>) =>
  Buffer.from(ed25519.sign(signingBytes('enclave/destroyed/v1', r), enclaveSecret)).toString('base64')

async function audit(bobRecord: ReturnType<typeof record>, bobSignature: string) {
  const logs = await Promise.all(
    [alice, bob].map(async (signer) =>
      GovernanceLog.open({ db: await dbs.open(), consortiumId: 'credit-club', signer }),
    ),
  )
  const good = record(1000)
  await logs[0].append(
    'enclave.destroyed',
    { record: good, enclaveKey, signature: signed(good) },
    { jobId: 'j1' },
  )
  await logs[1].append(
    'enclave.destroyed',
    { record: bobRecord, enclaveKey, signature: bobSignature },
    { jobId: 'j1' },
  )
  for (const log of logs) await log.checkpoint()
  return verifyBundles(await Promise.all(logs.map((log) => exportBundle({ log, members }))))
}

describe('enclave "destroyed" records in the audit', () => {
  it('passes when every log holds the same record, signed by the enclave', async () => {
    const r = await audit(record(1000), signed(record(1000)))
    expect(r.failures).toEqual([])
  })

  it('names the log whose record differs, and one whose record the enclave never signed', async () => {
    const other = await audit(record(2000), signed(record(2000)))
    expect(other.failures.map((f) => f.reason)).toEqual([
      expect.stringMatching(/job j1: the enclave's "destroyed" record differs/),
    ])
    const forged = await audit(record(2000), signed(record(1000)))
    expect(forged.failures.map((f) => f.reason)).toEqual([
      expect.stringMatching(
        /job j1: the enclave's "destroyed" record is not signed by the enclave key it names/,
      ),
    ])
  })
})
