import { peerIdFromString } from '@libp2p/peer-id'
import { runUntilSignal } from '../node/cli/node.ts'
import type { JobView } from '../node/jobs/service.ts'
import type { JobDraft } from '../protocol/jobs.ts'
import { missingLinks, type SimConsortium, startConsortium } from './consortium.ts'
import {
  type JobReport,
  openPolicies,
  registerVerticalData,
  runJob,
  teeJob,
  verticalJob,
} from './scenario.ts'

/**
 * The main job a newcomer runs (`npm start`): three institutions and an enclave operator on loopback form a
 * consortium, the institutions register their slices of the bundled credit data, and run PSI, then SecureBoost
 * and secret-shared logistic regression on the PSI job's alignment, and GBDT inside an attested enclave as jobs.
 * It prints the joint AUC next to what the label holder reaches alone, with time and bytes per party, then
 * keeps the nodes and their HTTP APIs up until Ctrl-C.
 */
export async function runDemo(
  opts: { logLevel?: string; out?: NodeJS.WritableStream; train?: boolean } = {},
): Promise<{ sim: SimConsortium; reports: Array<{ title: string; report: JobReport }> }> {
  const out = opts.out ?? process.stdout
  const t0 = performance.now()
  out.write(
    'Starting three institution nodes on 127.0.0.1: bank-a (holds the default label), lender-b, insurer-c,\n' +
      'and enclave-d, an operator that runs two (simulated) enclave processes…\n',
  )
  const sim = await startConsortium({
    names: ['bank-a', 'lender-b', 'insurer-c', 'enclave-d'],
    enclaves: { 'enclave-d': 2 },
    logLevel: opts.logLevel ?? 'warn',
  })
  const nodes = sim.nodes.map((n) => n.node)
  out.write(
    `Consortium "${sim.document.body.id}" formed and fully connected in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`,
  )
  const missing = missingLinks(nodes)
  if (missing.length) out.write(`not connected: ${missing.join(', ')}\n`)
  const reports: Array<{ title: string; report: JobReport }> = []
  if (opts.train !== false) {
    await openPolicies(sim)
    await registerVerticalData(sim)
    out.write(
      'Datasets registered (rows stay in each institution’s file): bank-a 13 features + label, lender-b 5, insurer-c 5.\n\n',
    )
    const show = progressPrinter(out)
    const run = async (title: string, draft: JobDraft) => {
      out.write(`▶ ${title}\n`)
      const report = await runJob(sim, 'bank-a', draft, (v) => show(title, v))
      const tty = (out as NodeJS.WriteStream).isTTY === true
      out.write(`${tty ? '\n' : ''}  → ${report.state}${report.reason ? `: ${report.reason}` : ''}\n`)
      reports.push({ title, report })
      return report
    }
    // The PSI job's alignment feeds both vertical trainings (as FATE's intersection output does), so they
    // train on the same customers without running PSI again.
    const psi = await run('PSI (customer alignment)', verticalJob('psi', 'ecdh-psi', 'he'))
    const alignment = psi.state === 'succeeded' ? { alignment: psi.id } : {}
    await run('SecureBoost (HE)', verticalJob('train', 'secureboost', 'he', alignment))
    await run(
      'SS logistic regression (MPC)',
      verticalJob('train', 'vertical-ss-lr', 'mpc', { ...alignment, algorithm: SS_LR_DEALER }),
    )
    await run('GBDT in an attested enclave (TEE)', teeJob('gbdt', 'enclave-d'))
    out.write(`\n${formatReports(reports)}\n`)
  }
  out.write('\nNodes (HTTP API with the operator token; OpenAPI at /v1/openapi.json):\n')
  for (const n of sim.nodes) {
    const peers = n.node.membership
      .peers()
      .map((m) => `${m.name}${n.node.host.getConnections(peerIdFromString(m.peerId)).length ? ' ✓' : ' ✗'}`)
    out.write(`  ${n.name.padEnd(10)} ${n.node.httpUrl}  token ${n.token}  peers ${peers.join(', ')}\n`)
  }
  return { sim, reports }
}

/**
 * One line per phase, updated in place on a terminal; elsewhere a new line per phase and per tenth of its
 * rounds, so a log of the run stays readable.
 */
/**
 * Three parties need a dealer for the Beaver correlations; the demo names the label holder, a trust assumption
 * (it could reconstruct the others' inputs) that docs/vertical-lr.md spells out. A data-less arbiter node is the
 * safer choice in production.
 */
const SS_LR_DEALER = { triples: 'dealer', dealer: 'bank-a' }

function progressPrinter(out: NodeJS.WritableStream) {
  const tty = (out as NodeJS.WriteStream).isTTY === true
  let lastPhase = ''
  let lastTenth = -1
  return (_title: string, v: JobView) => {
    const p = v.progress
    const phase = `${v.state} ${p?.phase ?? ''}`
    const tenth = p?.total ? Math.floor((10 * (p.done ?? 0)) / p.total) : -1
    const round = p?.total ? ` ${p.done ?? 0}/${p.total}` : ''
    const line = `  ${v.state.padEnd(10)} ${p ? `${p.phase}${round}${p.message ? ` (${p.message})` : ''}` : ''}`
    if (tty) out.write(`${phase === lastPhase ? '\r\x1b[K' : '\n'}${line}`)
    else if (phase !== lastPhase || tenth !== lastTenth) out.write(`${line}\n`)
    lastPhase = phase
    lastTenth = tenth
  }
}

export function formatReports(reports: Array<{ title: string; report: JobReport }>): string {
  const lines = [
    'Results (AUC on the 20% held-out aligned customers; bank-a alone = the same model family in plaintext on',
    'its own 13 features):',
  ]
  lines.push(
    `  ${'job'.padEnd(30)} ${'AUC joint'.padStart(9)} ${'bank-a alone'.padStart(12)} ${'seconds'.padStart(8)}   bytes sent per party`,
  )
  for (const { title, report } of reports) {
    const m = report.metrics
    const seconds = Math.max(...report.parties.map((p) => p.seconds))
    const joint =
      m.auc !== undefined ? m.auc.toFixed(4) : m.intersection !== undefined ? `${m.intersection} rows` : '—'
    const family = typeof report.summary.aloneModel === 'string' ? ` ${report.summary.aloneModel}` : ''
    const alone =
      m.auc_label_holder_alone !== undefined ? `${m.auc_label_holder_alone.toFixed(4)}${family}` : ''
    const bytes = report.parties.map((p) => `${p.name} ${formatBytes(p.bytesSent)}`).join(', ')
    lines.push(
      `  ${title.padEnd(30)} ${joint.padStart(9)} ${alone.padStart(12)} ${seconds.toFixed(1).padStart(8)}   ${bytes}`,
    )
  }
  return lines.join('\n')
}

function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`
  return `${n} B`
}

export async function demoCommand(opts: { logLevel?: string; train?: boolean }): Promise<void> {
  const { sim } = await runDemo(opts)
  process.stdout.write('\nCtrl-C stops the nodes and removes their data.\n')
  await runUntilSignal(
    sim.nodes.map((n) => n.node),
    () => sim.stop(),
  )
}
