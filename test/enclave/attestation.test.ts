import { beforeAll, describe, expect, it } from 'vitest'
import {
  appraise,
  DEFAULT_APPRAISAL,
  SYNDICATE_PRODUCT_ID,
  SYNDICATE_SIGNER,
} from '../../enclave/appraisal.ts'
import { DEFAULT_ENCLAVE_CONFIG, measure } from '../../enclave/measurement.ts'
import type { LaunchAttributes, SimulatedPlatform } from '../../enclave/platform.ts'
import { EnclaveEngine } from '../../enclave/runtime/engine.ts'
import { AttestationError, attest, NonceBook, SimVerifier } from '../../enclave/verifier.ts'
import { type Member, member, platformOf } from './fixtures.ts'

let hostM: Member
let platform: SimulatedPlatform
let engine: EnclaveEngine
const launch = (over: Partial<LaunchAttributes> = {}): LaunchAttributes => ({
  instanceId: 'enclave-1',
  measurement: measure(DEFAULT_ENCLAVE_CONFIG),
  signer: SYNDICATE_SIGNER,
  productId: SYNDICATE_PRODUCT_ID,
  svn: 1,
  debug: false,
  ...over,
})

beforeAll(async () => {
  hostM = await member('enclave-host')
  platform = await platformOf(hostM)
  engine = new EnclaveEngine(
    { ...launch(), platformKey: platform.key, platformHost: platform.host },
    DEFAULT_ENCLAVE_CONFIG,
  )
  engine.createCluster()
})

/** Evidence for `nonce` from the engine's cluster key, with the platform claiming `over`. */
function evidenceFor(nonce: Uint8Array, over: Partial<LaunchAttributes> = {}) {
  const { publicKey, reportData } = engine.report(nonce, 'cluster')
  return platform.quote(launch(over), publicKey, reportData)
}

async function refusal(p: Promise<unknown>): Promise<AttestationError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(AttestationError)
  return e as AttestationError
}

describe('attestation: verification then appraisal', () => {
  it('accepts fresh evidence of the expected build and returns the enclave key', async () => {
    const { claims } = await attest(
      new SimVerifier(),
      new NonceBook(),
      async (n) => evidenceFor(n),
      hostM.peerId,
    )
    appraise(claims, DEFAULT_APPRAISAL)
    expect(claims.publicKey).toBe(engine.clusterPublicKey)
    expect(claims.measurement).toBe(measure(DEFAULT_ENCLAVE_CONFIG))
  })

  it('refuses a wrong measurement', async () => {
    const other = measure({ ...DEFAULT_ENCLAVE_CONFIG, diagnostics: true })
    const { claims } = await attest(new SimVerifier(), new NonceBook(), async (n) =>
      evidenceFor(n, { measurement: other }),
    )
    const e = await refusal(Promise.resolve().then(() => appraise(claims, DEFAULT_APPRAISAL)))
    expect(e.check).toBe('measurement')
    expect(e.message).toMatch(/not an allowed enclave build/)
  })

  it('refuses a debug enclave unless the policy allows debug', async () => {
    const { claims } = await attest(new SimVerifier(), new NonceBook(), async (n) =>
      evidenceFor(n, { debug: true }),
    )
    const e = await refusal(Promise.resolve().then(() => appraise(claims, DEFAULT_APPRAISAL)))
    expect(e.check).toBe('debug')
    expect(e.message).toMatch(/debug mode/)
    expect(() => appraise(claims, { ...DEFAULT_APPRAISAL, allowDebug: true })).not.toThrow()
  })

  it('refuses an old security version and an untrusted signer', async () => {
    const { claims } = await attest(new SimVerifier(), new NonceBook(), async (n) =>
      evidenceFor(n, { svn: 0 }),
    )
    expect((await refusal(Promise.resolve().then(() => appraise(claims, DEFAULT_APPRAISAL)))).check).toBe(
      'svn',
    )
    const { claims: c2 } = await attest(new SimVerifier(), new NonceBook(), async (n) =>
      evidenceFor(n, { signer: 'ab'.repeat(32) }),
    )
    expect((await refusal(Promise.resolve().then(() => appraise(c2, DEFAULT_APPRAISAL)))).check).toBe(
      'signer',
    )
  })

  it('refuses evidence that comes back after its nonce went stale', async () => {
    let now = 1_000_000
    const book = new NonceBook({ maxAgeMs: 60_000, now: () => now })
    const e = await refusal(
      attest(new SimVerifier(), book, async (n) => {
        now += 61_000
        return evidenceFor(n)
      }),
    )
    expect(e.check).toBe('stale')
    expect(e.message).toMatch(/stale nonce: issued 61 s ago/)
  })

  it('refuses replayed evidence: bound to an earlier nonce, or its nonce already spent', async () => {
    const book = new NonceBook()
    const first = await attest(new SimVerifier(), book, async (n) => evidenceFor(n))
    // The same evidence answering a new challenge: bound to the old nonce.
    const e1 = await refusal(attest(new SimVerifier(), book, async () => first.evidence))
    expect(e1.check).toBe('binding')
    // Replaying the old nonce itself: the verifier never issued it for this round.
    const old = Buffer.from(first.evidence.reportData, 'hex')
    expect(() => book.spend(old)).toThrow(/not issued by this verifier or was already used/)
  })

  it('refuses altered evidence, a foreign platform and another host', async () => {
    const book = new NonceBook()
    const e1 = await refusal(attest(new SimVerifier(), book, async (n) => ({ ...evidenceFor(n), svn: 9 })))
    expect(e1.check).toBe('signature')
    const stranger = await member('stranger')
    const e2 = await refusal(attest(new SimVerifier(), book, async (n) => evidenceFor(n), stranger.peerId))
    expect(e2.check).toBe('platform')
    const forged = await platformOf(stranger)
    const e3 = await refusal(
      attest(new SimVerifier(), book, async (n) => {
        const ev = evidenceFor(n)
        // A platform key that the named host never certified.
        return { ...ev, platform: { ...ev.platform, key: forged.key } }
      }),
    )
    expect(e3.check).toBe('platform')
    const e4 = await refusal(attest(new SimVerifier(), book, async () => ({ tee: 'sgx' })))
    expect(e4.check).toBe('format')
  })
})
