import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { appraise, DEFAULT_APPRAISAL } from '../../enclave/appraisal.ts'
import { destroyedSigned, openModel } from '../../enclave/client.ts'
import { EnclaveCluster } from '../../enclave/cluster.ts'
import { DEFAULT_ENCLAVE_CONFIG, measure } from '../../enclave/measurement.ts'
import type { SimulatedPlatform } from '../../enclave/platform.ts'
import { attest, NonceBook, SimVerifier } from '../../enclave/verifier.ts'
import { type Member, member, ownerRows, platformOf, teeSpec, uploadFor } from './fixtures.ts'

/** Enclave processes on the simulated platform: key sync, failover, and what remains after a job. */
let bank: Member
let lender: Member
let hostM: Member
let platform: SimulatedPlatform
const clusters: EnclaveCluster[] = []

beforeAll(async () => {
  ;[bank, lender, hostM] = await Promise.all([member('bank-a'), member('lender-b'), member('enclave-host')])
  platform = await platformOf(hostM)
})
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.stop()))
})

async function cluster(opts: ConstructorParameters<typeof EnclaveCluster>[0]): Promise<EnclaveCluster> {
  const c = new EnclaveCluster(opts)
  clusters.push(c)
  await c.start()
  return c
}

/** Attests the cluster for `job`, uploads both owners' rows; returns the owners' uploads and claims. */
async function upload(c: EnclaveCluster, spec: ReturnType<typeof teeSpec>, rows = ownerRows(4000)) {
  const { claims } = await attest(
    new SimVerifier(),
    new NonceBook(),
    (n) => c.evidence(spec.id, n),
    hostM.peerId,
  )
  await c.openJob(spec.id, spec)
  const ups = {
    'bank-a': await uploadFor(spec, bank, rows.guest, claims),
    'lender-b': await uploadFor(spec, lender, rows.host, claims),
  }
  for (const [party, u] of Object.entries(ups)) {
    await c.upload(spec.id, party, u.policy, u.wrappedKey, u.chunks.length)
    for (const [i, box] of u.chunks.entries()) await c.chunk(spec.id, party, i, box)
  }
  return { claims, ups }
}

describe('enclave cluster', () => {
  it('registers instances only after key sync; a debug or differently built instance gets no key', async () => {
    const c = await cluster({ platform, instances: 2 })
    expect(c.instances()).toHaveLength(2)
    // Both instances hold the same cluster key: evidence from either carries it.
    const keys = new Set<string>()
    for (const inst of c.instances()) {
      const { publicKey } = await inst.call('report', { nonce: new Uint8Array(32), key: 'cluster' })
      keys.add(publicKey)
    }
    expect(keys.size).toBe(1)
    await expect(c.add({ debug: true })).rejects.toThrow(/debug mode/)
    await expect(c.add({ config: { ...DEFAULT_ENCLAVE_CONFIG, maxJobs: 1 } })).rejects.toThrow(
      /not an allowed enclave build/,
    )
    expect(c.instances()).toHaveLength(2)
    // The IPC is schema-checked inside the enclave too: an oversized or malformed request is refused.
    const [inst] = c.instances()
    const big = { job: 'j', party: 'p', index: 0, box: new Uint8Array(2 * 1024 * 1024) }
    await expect(inst.call('job.chunk', big)).rejects.toThrow(/invalid job.chunk request: box at most/)
    await expect(inst.call('job.open', { spec: { id: 'x' } })).rejects.toThrow(/not an enclave training job/)
    expect(inst.alive).toBe(true)
    expect(await inst.call('inventory', {})).toMatchObject({ jobs: 0 })
  })

  it('trains in an enclave process; the data is gone from its heap afterwards', async () => {
    // A diagnostics build (its own measurement) so the test can search the enclave's heap.
    const config = { ...DEFAULT_ENCLAVE_CONFIG, diagnostics: true }
    const c = await cluster({ platform, instances: 1, instance: { config } })
    const spec = teeSpec('tee-heap', bank, lender, hostM, 'gbdt', { seed: 3, algorithm: { trees: 20 } })
    const rows = ownerRows(4000, 'zq7-cust-')
    const { claims, ups } = await upload(c, spec, rows)
    expect(() => appraise(claims, DEFAULT_APPRAISAL)).toThrow(/not an allowed enclave build/)
    appraise(claims, { ...DEFAULT_APPRAISAL, measurements: [measure(config)] })
    const phases: string[] = []
    const out = await c.run(spec.id, (p) => phases.push(p))
    expect(phases).toContain('key release')
    expect(out.metrics.auc).toBeGreaterThan(0.7)
    expect(openModel(ups['bank-a'].replyKey, out.models['bank-a'], spec.id).kind).toBe('gbdt')
    expect(destroyedSigned(out.destroyed.record, out.destroyed.signature, claims)).toBe(true)
    const [inst] = c.instances()
    expect(await inst.call('inventory', {})).toMatchObject({
      jobs: 0,
      uploads: 0,
      ciphertextBytes: 0,
      dataKeys: 0,
      plaintextRows: 0,
    })
    // The probe finds strings that came out of the decrypted upload and legitimately stay (the model's
    // feature names), and none of the customer ids that came with them.
    const hash = (s: string) => createHash('sha256').update(s).digest('hex')
    const markers = ['bank-a.x3', 'zq7-cust-17', 'zq7-cust-2024', 'zq7-cust-3999']
    const { found } = await inst.call('probe', { sha256: markers.map(hash) })
    expect(found).toEqual([hash('bank-a.x3')])
  })

  it('fails a crashed instance’s job over to another instance holding the cluster key', async () => {
    const c = await cluster({ platform, instances: 2 })
    const spec = teeSpec('tee-failover', bank, lender, hostM, 'lr', { seed: 5 })
    const { claims } = await upload(c, spec)
    const first = c.instanceOf(spec.id)!
    first.kill()
    await first.exited
    const phases: string[] = []
    const out = await c.run(spec.id, (p) => phases.push(p))
    expect(phases.some((p) => /failing over/.test(p))).toBe(true)
    expect(out.destroyed.record.instanceId).not.toBe(first.launch.instanceId)
    expect(destroyedSigned(out.destroyed.record, out.destroyed.signature, claims)).toBe(true)
    expect(out.metrics.auc).toBeGreaterThan(0.65)
  })
})
