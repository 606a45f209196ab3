/**
 * Governance log: append throughput, proof generation, and offline verification of an exported bundle.
 *   npm run bench -- governance [--n 20000] [--checkpoint-every 1000]
 */
import { createHash, createPublicKey, verify } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ed25519 } from '@noble/curves/ed25519.js'
import { Level } from 'level'
import { exportBundle } from '../governance/bundle.ts'
import { entrySigningBytes, type LogEntry } from '../governance/entry.ts'
import { fromHex, signerFromSeed } from '../governance/keys.ts'
import { GovernanceLog } from '../governance/log.ts'
import { verifyInclusion } from '../governance/merkle.ts'
import { verifyBundles } from '../governance/verify.ts'
import { emit, ratio } from './report.ts'

function flag(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : fallback
}

const hex = (s: string) => createHash('sha256').update(s).digest('hex')

export default async function (argv: string[]): Promise<void> {
  const n = flag(argv, 'n', 20_000)
  const every = flag(argv, 'checkpoint-every', 1000)
  const dir = mkdtempSync(join(tmpdir(), 'syndicate-bench-gov-'))
  const signer = signerFromSeed('bench', new Uint8Array(createHash('sha256').update('bench').digest()))
  try {
    // Baseline for appends: the same number of raw LevelDB puts of entry-sized values, no signing, no tree.
    const raw = new Level<string, string>(join(dir, 'raw'))
    const value = 'x'.repeat(420)
    let t0 = performance.now()
    for (let i = 0; i < n; i++) await raw.put(`e/${i.toString(16).padStart(14, '0')}`, value)
    const rawSeconds = (performance.now() - t0) / 1000
    await raw.close()

    const db = new Level<string, unknown>(join(dir, 'log'), { valueEncoding: 'json' })
    const log = await GovernanceLog.open({ db, consortiumId: 'bench', signer })
    const body = (i: number) => ({
      specHash: hex(`spec ${i % 50}`),
      voter: signer.member.peerId,
      decision: 'accept' as const,
    })
    t0 = performance.now()
    for (let i = 0; i < n; i++) {
      await log.append('job.vote', body(i), { jobId: `job-${i % 50}` })
      if ((i + 1) % every === 0) await log.checkpoint()
    }
    const appendSeconds = (performance.now() - t0) / 1000
    emit({
      bench: 'governance',
      case: 'append-sequential',
      entries: n,
      seconds: appendSeconds,
      append_entries_per_s: n / appendSeconds,
      baseline_s: rawSeconds,
      baseline: 'raw LevelDB puts, same count, no signing or tree',
      ratio: ratio(appendSeconds, rawSeconds),
    })

    // Concurrent callers: the append queue keeps indices dense; throughput is the same serial pipeline.
    const burst = Math.min(2000, n)
    t0 = performance.now()
    await Promise.all(
      Array.from({ length: burst }, (_, i) => log.append('job.vote', body(i), { jobId: `job-${i % 50}` })),
    )
    const burstSeconds = (performance.now() - t0) / 1000
    await log.checkpoint()
    emit({
      bench: 'governance',
      case: 'append-concurrent',
      entries: burst,
      seconds: burstSeconds,
      append_entries_per_s: burst / burstSeconds,
      baseline_s: appendSeconds * (burst / n),
      baseline: 'sequential appends, same count',
      ratio: ratio(burstSeconds, appendSeconds * (burst / n)),
    })

    // Proofs from the store: O(log n) node reads each.
    const size = log.size
    const root = log.root()
    const proofs = 2000
    t0 = performance.now()
    for (let k = 0; k < proofs; k++) {
      const index = Math.floor(Math.random() * size)
      const p = await log.inclusionProof(index, size)
      if (!verifyInclusion(index, size, p.leafHash, p.proof, root)) throw new Error('inclusion proof failed')
    }
    const proofSeconds = (performance.now() - t0) / 1000
    t0 = performance.now()
    for (let k = 0; k < proofs; k++)
      await log.consistencyProof(1 + Math.floor(Math.random() * (size - 1)), size)
    const consistencySeconds = (performance.now() - t0) / 1000
    emit({
      bench: 'governance',
      case: 'proofs',
      tree_size: size,
      inclusion_proofs_per_s: proofs / proofSeconds,
      consistency_proofs_per_s: proofs / consistencySeconds,
      seconds: proofSeconds + consistencySeconds,
    })

    // Offline verification of the exported bundle, parsed from JSON as the CLI does.
    const members = [signer.member]
    const text = JSON.stringify(await exportBundle({ log, members }))
    await db.close()
    const entries = (JSON.parse(text) as { entries: LogEntry[] }).entries
    const key = createPublicKey({
      key: {
        kty: 'OKP',
        crv: 'Ed25519',
        x: Buffer.from(fromHex(signer.member.publicKey)).toString('base64url'),
      },
      format: 'jwk',
    })
    // The baseline is one plain Ed25519 signature per entry, as if each were signed alone: concurrent appends
    // share a batch signature (governance/batch-sign.ts), which the verifier checks once per batch.
    const messages = await Promise.all(
      entries.map(async (e) => {
        const msg = entrySigningBytes(e)
        return { msg, sig: await signer.sign(msg) }
      }),
    )
    t0 = performance.now()
    for (const m of messages) if (!verify(null, m.msg, key, m.sig)) throw new Error('bad signature')
    const sigSeconds = (performance.now() - t0) / 1000
    const nobleSample = Math.min(500, messages.length)
    t0 = performance.now()
    for (const m of messages.slice(0, nobleSample)) {
      if (!ed25519.verify(m.sig, m.msg, fromHex(signer.member.publicKey))) throw new Error('bad signature')
    }
    const nobleSeconds = ((performance.now() - t0) / 1000) * (messages.length / nobleSample)

    for (const signatures of ['checkpoints', 'all'] as const) {
      t0 = performance.now()
      const report = await verifyBundles([JSON.parse(text)], { signatures })
      const seconds = (performance.now() - t0) / 1000
      if (!report.ok) throw new Error(`verification failed: ${JSON.stringify(report.failures[0])}`)
      emit({
        bench: 'governance',
        case: signatures === 'all' ? 'verify-every-signature' : 'verify',
        entries: entries.length,
        seconds,
        verify_entries_per_s: entries.length / seconds,
        signatures_checked: report.logs[0].signaturesVerified,
        target: 20_000,
        baseline_s: sigSeconds,
        baseline: 'node:crypto Ed25519 verify of every entry signature, one by one, nothing else',
        ratio: ratio(seconds, sigSeconds),
        noble_every_signature_s: nobleSeconds,
      })
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
