import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { appraise, DEFAULT_APPRAISAL } from '../enclave/appraisal.ts'
import { prepareUpload } from '../enclave/client.ts'
import { EnclaveCluster } from '../enclave/cluster.ts'
import { SimulatedPlatform } from '../enclave/platform.ts'
import { specHashOf } from '../enclave/release.ts'
import { attest, NonceBook, SimVerifier } from '../enclave/verifier.ts'
import { loadCsv } from '../learning/data/csv.ts'
import { type Dataset, joinOnId, prefixColumns, selectColumns } from '../learning/data/dataset.ts'
import { stratifiedSplit } from '../learning/data/split.ts'
import { auc } from '../learning/metrics/ranking.ts'
import { scoreDataset, trainModel } from '../learning/models/train.ts'
import { startConsortium } from '../sim/consortium.ts'
import { bundledDataDir, VERTICAL_PLAN } from '../sim/data.ts'
import { call, openPolicies, registerVerticalData, teeJob } from '../sim/scenario.ts'
import { emit, ratio } from './report.ts'

/**
 * `npm run bench -- enclave [--algorithms lr,gbdt] [--attestations 20] [--repeat 3]`: enclave mode on the vertical split
 * (bank-a: label and 13 features; lender-b and insurer-c: 5 host features each; 30,000 customers).
 *
 * - `attestation`: one owner's attestation round trip (nonce → enclave report over IPC → platform quote →
 *   verification and appraisal), per second.
 * - `tee ALG direct`: the enclave cluster driven in process (no network): attestation, encryption and upload
 *   of the three owners' rows over IPC, key release, decryption, join, training and evaluation inside.
 * - `tee ALG job libp2p`: the whole `tee` training job between four real nodes on loopback, from the proposal
 *   to every party's success (negotiation, loading the registered files, attestation, upload, training).
 * The baseline of both is plaintext training on the joined data in this process with the same seed: join,
 * split, train and evaluate the same model on rows already in memory (nodes keep the rows of registered
 * datasets parsed, so neither side reads files). Every figure is the best of `repeat` runs, the first of which
 * also warms up the code paths of a fresh enclave process and fresh nodes. Target (issue 8): <= 2x.
 */
const TARGET_RATIO = 2

function owners(dir: string): { name: string; rows: Dataset; label: boolean }[] {
  const guest = loadCsv(join(dir, VERTICAL_PLAN.labelHolder.file), { id: 'id', label: 'y' })
  const host = loadCsv(join(dir, VERTICAL_PLAN.partners[0].file), { id: 'id' })
  return [
    { name: VERTICAL_PLAN.labelHolder.name, rows: guest, label: true },
    ...VERTICAL_PLAN.partners.map((p) => ({
      name: p.name,
      rows: selectColumns(host, [...p.columns]),
      label: false,
    })),
  ]
}

/** The plaintext reference: the owners' rows joined as the enclave joins them, one model, one evaluation. */
function plaintext(
  data: ReturnType<typeof owners>,
  algorithm: 'lr' | 'gbdt',
  seed: number,
): { seconds: number; auc: number } {
  const t0 = performance.now()
  const parts = data.map(({ name, rows }) => prefixColumns(rows, `${name}.`))
  const joined = parts.slice(1).reduce((acc, p) => joinOnId(acc, p), parts[0])
  const { train, test } = stratifiedSplit(joined, seed, 0.2)
  const model = algorithm === 'lr' ? trainModel('lr', train) : trainModel('gbdt', train)
  const a = auc(test.y!, scoreDataset(model, test))
  return { seconds: (performance.now() - t0) / 1000, auc: a }
}

/** One case next to its plaintext baseline. */
function compared(
  name: string,
  run: { seconds: number } & Record<string, number | undefined>,
  base: { seconds: number; auc: number },
): void {
  emit({
    bench: 'enclave',
    case: name,
    ...run,
    baseline_s: base.seconds,
    ratio: ratio(run.seconds, base.seconds),
    target: TARGET_RATIO,
    auc_plaintext: base.auc,
  })
}

/** The best of `repeat` runs (noise on a shared machine only ever adds time). */
async function best<T extends { seconds: number }>(
  repeat: number,
  run: (i: number) => Promise<T> | T,
): Promise<T> {
  let top: T | undefined
  for (let i = 0; i < repeat; i++) {
    const r = await run(i)
    if (!top || r.seconds < top.seconds) top = r
  }
  return top!
}

export default async function enclave(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      algorithms: { type: 'string', default: 'lr,gbdt' },
      attestations: { type: 'string', default: '20' },
      repeat: { type: 'string', default: '3' },
    },
  })
  const algorithms = values.algorithms.split(',') as ('lr' | 'gbdt')[]
  const repeat = Number(values.repeat)
  const seed = 11
  const data = owners(bundledDataDir())
  const baselines = new Map<string, { seconds: number; auc: number }>()
  for (const algorithm of algorithms)
    baselines.set(algorithm, await best(repeat, () => plaintext(data, algorithm, seed)))

  // In process: the cluster, three owners, no network.
  const hostKey = await generateKeyPair('Ed25519')
  const hostPeer = peerIdFromPrivateKey(hostKey).toString()
  const platform = await SimulatedPlatform.create(hostKey, hostPeer)
  const cluster = new EnclaveCluster({ platform, instances: 1 })
  await cluster.start()
  const ownerKeys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
  try {
    const book = new NonceBook()
    const verifier = new SimVerifier()
    const n = Number(values.attestations)
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const { claims } = await attest(verifier, book, (nonce) => cluster.evidence('bench', nonce), hostPeer)
      appraise(claims, DEFAULT_APPRAISAL)
    }
    const per = (performance.now() - t0) / 1000 / n
    emit({ bench: 'enclave', case: 'attestation', seconds: per, attestations_per_s: 1 / per })

    for (const algorithm of algorithms) {
      const base = baselines.get(algorithm)!
      const run = await best(repeat, async (rep) => {
        const spec = {
          id: `bench-${algorithm}-${rep}`,
          kind: 'train',
          mode: 'tee',
          algorithm,
          params: { seed },
          parties: [
            ...data.map((o, i) => ({
              name: o.name,
              peerId: peerIdFromPrivateKey(ownerKeys[i]).toString(),
              roles: [o.label ? 'label-holder' : 'feature-holder'],
              dataset: 'credit-vertical',
            })),
            { name: 'enclave-d', peerId: hostPeer, roles: ['enclave-host'] },
          ],
          outputs: [{ what: 'model', to: [data[0].name] }],
        }
        const tStart = performance.now()
        await cluster.openJob(spec.id, spec)
        const attested = await Promise.all(
          data.map(
            async () =>
              (await attest(verifier, book, (nonce) => cluster.evidence(spec.id, nonce), hostPeer)).claims,
          ),
        )
        const tAttest = performance.now()
        for (const [i, o] of data.entries()) {
          const up = await prepareUpload({
            claims: attested[i],
            rows: o.rows,
            signingKey: ownerKeys[i],
            policy: {
              job: spec.id,
              specHash: specHashOf(spec),
              owner: spec.parties[i].peerId,
              party: o.name,
              algorithms: [algorithm],
              recipients: [data[0].name],
              notAfter: Date.now() + 3_600_000,
            },
          })
          await cluster.upload(spec.id, o.name, up.policy, up.wrappedKey, up.chunks.length)
          for (const [k, c] of up.chunks.entries()) await cluster.chunk(spec.id, o.name, k, c)
        }
        const tUpload = performance.now()
        const out = await cluster.run(spec.id)
        const tEnd = performance.now()
        return {
          seconds: (tEnd - tStart) / 1000,
          attest_s: (tAttest - tStart) / 1000,
          upload_s: (tUpload - tAttest) / 1000,
          train_s: (tEnd - tUpload) / 1000,
          auc: out.metrics.auc,
        }
      })
      compared(`tee ${algorithm} direct (in process, 3 owners, 30000 rows)`, run, base)
    }
  } finally {
    await cluster.stop()
  }

  // Four real nodes on loopback: the whole job.
  const sim = await startConsortium({
    names: ['bank-a', 'lender-b', 'insurer-c', 'enclave-d'],
    enclaves: { 'enclave-d': 2 },
    logLevel: 'error',
  })
  try {
    await openPolicies(sim)
    await registerVerticalData(sim)
    const proposer = sim.nodes[0]
    for (const algorithm of algorithms) {
      const base = baselines.get(algorithm)!
      const run = await best(repeat, async () => {
        const t0 = performance.now()
        const created = await call<{ spec: { id: string } }>(
          proposer.node,
          proposer.token,
          'POST',
          '/v1/jobs',
          teeJob(algorithm, 'enclave-d', { seed }),
        )
        const id = created.spec.id
        for (;;) {
          const views = await Promise.all(sim.nodes.map((s) => s.node.jobs.get(id)))
          if (views.every((v) => v?.state === 'succeeded')) break
          const bad = views.find((v) => v && ['failed', 'cancelled', 'rejected', 'expired'].includes(v.state))
          if (bad) throw new Error(`tee job ${id} ${bad.state}: ${bad.reason}`)
          await new Promise((r) => setTimeout(r, 10))
        }
        const seconds = (performance.now() - t0) / 1000
        return { seconds, auc: (await proposer.node.jobs.get(id))?.result?.metrics.auc }
      })
      compared(`tee ${algorithm} job libp2p (4 nodes, 3 owners, 30000 rows)`, run, base)
    }
  } finally {
    await sim.stop()
  }
}
