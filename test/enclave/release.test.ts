import { beforeAll, describe, expect, it } from 'vitest'
import { SYNDICATE_PRODUCT_ID, SYNDICATE_SIGNER } from '../../enclave/appraisal.ts'
import { destroyedSigned, openModel } from '../../enclave/client.ts'
import { DEFAULT_ENCLAVE_CONFIG } from '../../enclave/measurement.ts'
import type { SimulatedPlatform } from '../../enclave/platform.ts'
import { EnclaveEngine } from '../../enclave/runtime/engine.ts'
import { attest, type Claims, NonceBook, SimVerifier } from '../../enclave/verifier.ts'
import { joinOnId, prefixColumns } from '../../learning/data/dataset.ts'
import { stratifiedSplit } from '../../learning/data/split.ts'
import { auc } from '../../learning/metrics/ranking.ts'
import { scoreDataset, trainModel } from '../../learning/models/train.ts'
import { type Member, member, ownerRows, platformOf, teeSpec, uploadFor } from './fixtures.ts'

let bank: Member
let lender: Member
let hostM: Member
let platform: SimulatedPlatform

beforeAll(async () => {
  ;[bank, lender, hostM] = await Promise.all([member('bank-a'), member('lender-b'), member('enclave-host')])
  platform = await platformOf(hostM)
})

async function freshEngine(): Promise<{ engine: EnclaveEngine; claims: Claims }> {
  const engine = new EnclaveEngine(
    {
      instanceId: 'enclave-1',
      signer: SYNDICATE_SIGNER,
      productId: SYNDICATE_PRODUCT_ID,
      svn: 1,
      debug: false,
      platformKey: platform.key,
      platformHost: platform.host,
    },
    DEFAULT_ENCLAVE_CONFIG,
  )
  engine.createCluster()
  const { claims } = await attest(new SimVerifier(), new NonceBook(), async (n) => {
    const r = engine.report(n, 'cluster')
    return platform.quote(
      {
        instanceId: 'enclave-1',
        measurement: engine.measurement,
        signer: SYNDICATE_SIGNER,
        productId: 1,
        svn: 1,
        debug: false,
      },
      r.publicKey,
      r.reportData,
    )
  })
  return { engine, claims }
}

const rows = ownerRows(3000)

/** Hands an owner's upload to the engine, as the host does: header, then every chunk. */
function feed(
  engine: EnclaveEngine,
  job: string,
  party: string,
  up: Awaited<ReturnType<typeof uploadFor>>,
  chunks = up.chunks,
): void {
  engine.upload(job, party, up.policy, up.wrappedKey, chunks.length)
  for (const [i, c] of chunks.entries()) engine.chunk(job, party, i, c)
}

describe('key release inside the enclave', () => {
  it('trains on the joined rows, seals the model to its recipient only, wipes and signs the record', async () => {
    const { engine, claims } = await freshEngine()
    const spec = teeSpec('tee-ok', bank, lender, hostM, 'lr', { seed: 7 })
    engine.openJob(spec)
    const ub = await uploadFor(spec, bank, rows.guest, claims)
    const ul = await uploadFor(spec, lender, rows.host, claims)
    feed(engine, spec.id, 'bank-a', ub)
    feed(engine, spec.id, 'lender-b', ul)
    const out = await engine.run(spec.id)
    // Plaintext reference: the same join, split and trainer on the pooled rows.
    const pooled = joinOnId(prefixColumns(rows.guest, 'bank-a.'), prefixColumns(rows.host, 'lender-b.'))
    const { train, test } = stratifiedSplit(pooled, 7, 0.2)
    const plain = auc(test.y!, scoreDataset(trainModel('lr', train), test))
    expect(Math.abs(out.metrics.auc - plain)).toBeLessThan(0.005)
    expect(Object.keys(out.models)).toEqual(['bank-a'])
    const model = openModel(ub.replyKey, out.models['bank-a'], spec.id)
    expect(model.kind).toBe('lr')
    expect(() => openModel(ul.replyKey, out.models['bank-a'], spec.id)).toThrow(/does not open/)
    expect(destroyedSigned(out.destroyed.record, out.destroyed.signature, claims)).toBe(true)
    expect(out.destroyed.record.owners.map((o) => o.rows)).toEqual([3000, 3000])
    expect(engine.inventory()).toMatchObject({ jobs: 0, uploads: 0, dataKeys: 0, plaintextRows: 0 })
  })

  it('trains an MLP the same way', async () => {
    const { engine, claims } = await freshEngine()
    const spec = teeSpec('tee-mlp', bank, lender, hostM, 'mlp', {
      seed: 2,
      algorithm: { hidden: [8], maxEpochs: 5 },
    })
    engine.openJob(spec)
    for (const [owner, data] of [
      [bank, rows.guest],
      [lender, rows.host],
    ] as const) {
      const u = await uploadFor(spec, owner, data, claims)
      feed(engine, spec.id, owner.name, u)
    }
    const out = await engine.run(spec.id)
    expect(out.metrics.auc).toBeGreaterThan(0.65)
    expect(engine.inventory()).toMatchObject({ jobs: 0, dataKeys: 0, plaintextRows: 0, models: 1 })
  })

  it('releases no key when one owner’s policy excludes the algorithm', async () => {
    const { engine, claims } = await freshEngine()
    const spec = teeSpec('tee-gbdt', bank, lender, hostM, 'gbdt')
    engine.openJob(spec)
    const ub = await uploadFor(spec, bank, rows.guest, claims)
    const ul = await uploadFor(spec, lender, rows.host, claims, { algorithms: ['lr'] })
    feed(engine, spec.id, 'bank-a', ub)
    feed(engine, spec.id, 'lender-b', ul)
    await expect(engine.run(spec.id)).rejects.toThrow(
      /no key released: the usage policy of lender-b does not admit algorithm gbdt \(it allows lr\)/,
    )
    expect(engine.inventory()).toMatchObject({ jobs: 0, dataKeys: 0, plaintextRows: 0 })
  })

  it('refuses a recipient the policy does not allow, and a forged policy', async () => {
    const { engine, claims } = await freshEngine()
    const spec = teeSpec('tee-rcpt', bank, lender, hostM)
    engine.openJob(spec)
    const ub = await uploadFor(spec, bank, rows.guest, claims)
    const ul = await uploadFor(spec, lender, rows.host, claims, { recipients: [] })
    feed(engine, spec.id, 'bank-a', ub)
    feed(engine, spec.id, 'lender-b', ul)
    await expect(engine.run(spec.id)).rejects.toThrow(/lender-b does not let bank-a receive the model/)

    engine.openJob(spec)
    // The host widens lender-b's policy: the signature no longer matches.
    const widened = { ...ul.policy, policy: { ...ul.policy.policy, recipients: ['bank-a'] } }
    feed(engine, spec.id, 'bank-a', ub)
    feed(engine, spec.id, 'lender-b', { ...ul, policy: widened })
    await expect(engine.run(spec.id)).rejects.toThrow(/usage policy of lender-b is not signed by lender-b/)
  })

  it('refuses a tampered ciphertext, naming the owner and chunk', async () => {
    const { engine, claims } = await freshEngine()
    const spec = teeSpec('tee-tamper', bank, lender, hostM)
    engine.openJob(spec)
    const ub = await uploadFor(spec, bank, rows.guest, claims)
    const ul = await uploadFor(spec, lender, rows.host, claims)
    feed(engine, spec.id, 'bank-a', ub)
    const bad = ul.chunks.map((c) => c.slice())
    bad[0][100] ^= 1
    feed(engine, spec.id, 'lender-b', ul, bad)
    await expect(engine.run(spec.id)).rejects.toMatchObject({
      code: 'ERR_ENCLAVE_TAMPERED',
      message: expect.stringMatching(/chunk 1 of 1 uploaded by lender-b fails authentication/),
    })
    expect(engine.inventory()).toMatchObject({ jobs: 0, dataKeys: 0, plaintextRows: 0 })
  })

  it('refuses a data key wrapped to another enclave', async () => {
    const a = await freshEngine()
    const b = await freshEngine()
    const spec = teeSpec('tee-other', bank, lender, hostM)
    a.engine.openJob(spec)
    const ub = await uploadFor(spec, bank, rows.guest, a.claims)
    const ul = await uploadFor(spec, lender, rows.host, { ...a.claims, publicKey: b.claims.publicKey })
    feed(a.engine, spec.id, 'bank-a', ub)
    feed(a.engine, spec.id, 'lender-b', ul)
    await expect(a.engine.run(spec.id)).rejects.toThrow(/data key of lender-b does not unwrap/)
  })
})
