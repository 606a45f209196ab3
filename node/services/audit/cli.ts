/**
 * `syndicate audit export` and `syndicate audit verify`: the auditor's command line. Export asks a running
 * node for its audit bundle; verify checks bundles offline and exits non-zero naming the first bad entry.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import type { Command } from 'commander'
import { type Member, memberFrom, memberFromPeerId } from '../../../governance/keys.ts'
import { type VerifyReport, verifyBundles } from '../../../governance/verify.ts'
import { type ApiTarget, apiCall, apiOptions, resolveTarget } from '../../cli/client.ts'
import { UsageError } from '../../errors.ts'

export interface AuditVerifyOptions {
  /** Check every entry's own signature, not only through the checkpoints. */
  allSignatures?: boolean
  /** File with the trusted members: a consortium document, or a JSON array of {name, peerId[, publicKey]}. */
  members?: string
  /** Files holding signed checkpoints seen earlier (one note per file). */
  previous?: string[]
  minCosignatures?: number
  json?: boolean
}

/** Reads trusted members from a consortium document or a member list; keys come from Ed25519 peer ids. */
export function readMembers(file: string): Member[] {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    throw new UsageError('ERR_USAGE', `cannot read members from ${file}: ${(e as Error).message}`)
  }
  const list = Array.isArray(json) ? json : (json as { body?: { members?: unknown } })?.body?.members
  if (!Array.isArray(list)) {
    throw new UsageError('ERR_USAGE', `${file} is neither a consortium document nor a JSON array of members`)
  }
  return list.map((m: { name: string; peerId: string; publicKey?: string }) =>
    m.publicKey
      ? memberFrom({ name: m.name, peerId: m.peerId, publicKey: m.publicKey })
      : memberFromPeerId(m.name, m.peerId),
  )
}

export function formatReport(report: VerifyReport, files: readonly string[]): string {
  const lines = [`checked ${files.length} bundle(s): ${files.join(', ')}`]
  for (const c of report.checks) lines.push(`  ok  ${c}`)
  for (const w of report.warnings) lines.push(`  warning  ${w}`)
  for (const f of report.failures) {
    const where =
      f.bundle >= 0
        ? `${files[f.bundle] ?? `bundle ${f.bundle}`}${f.origin ? ` (${f.origin})` : ''}`
        : 'input'
    lines.push(`  FAIL  ${where}: ${f.index !== undefined ? `entry ${f.index}: ` : ''}${f.reason}`)
  }
  const total = report.logs.reduce((n, l) => n + l.entries, 0)
  lines.push(
    report.ok
      ? `OK: ${total} entries in ${report.logs.length} log(s) verified in ${report.seconds.toFixed(2)} s (${Math.round(report.entriesPerSecond)} entries/s)`
      : `FAILED: ${report.failures.length} problem(s); the first is listed first`,
  )
  return `${lines.join('\n')}\n`
}

/** Verifies bundle files; returns the process exit code (0 verified, 1 a check failed). */
export async function runAuditVerify(
  files: readonly string[],
  options: AuditVerifyOptions,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<number> {
  if (files.length === 0) throw new UsageError('ERR_USAGE', 'name at least one bundle file')
  const unreadable: string[] = []
  const bundles = files.map((f) => {
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as unknown
    } catch (e) {
      unreadable.push(`  FAIL  ${f}: cannot read a JSON bundle (${(e as Error).message})\n`)
      return undefined
    }
  })
  const report = await verifyBundles(bundles, {
    signatures: options.allSignatures ? 'all' : 'checkpoints',
    trustedMembers: options.members ? readMembers(options.members) : undefined,
    previousCheckpoints: (options.previous ?? []).map((f) => readFileSync(f, 'utf8')),
    minCosignatures: options.minCosignatures,
  })
  for (const line of unreadable) write(line)
  write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, files))
  return report.ok && unreadable.length === 0 ? 0 : 1
}

/** Fetches the audit bundle of a running node (GET /v1/audit/export) into `out`. */
export async function runAuditExport(
  target: ApiTarget,
  out: string,
): Promise<{ entries: number; checkpoints: number }> {
  const bundle = await apiCall<{ entries: unknown[]; checkpoints: string[] }>(
    target,
    'GET',
    '/v1/audit/export',
  )
  writeFileSync(out, `${JSON.stringify(bundle)}\n`)
  return { entries: bundle.entries.length, checkpoints: bundle.checkpoints.length }
}

export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description("export and verify the consortium's governance logs")
  apiOptions(
    audit
      .command('export')
      .description("write a node's governance log (entries, checkpoints, cosignatures, members) as a bundle")
      .requiredOption('--out <file>', 'where to write the bundle (JSON)'),
  ).action(async (o: { out: string; dir?: string; api?: string; token?: string }) => {
    const r = await runAuditExport(resolveTarget(o), o.out)
    process.stdout.write(`wrote ${o.out}: ${r.entries} entries, ${r.checkpoints} checkpoints\n`)
  })
  audit
    .command('verify')
    .description('verify audit bundles offline: signatures, Merkle tree, proofs, cosignatures, shared jobs')
    .argument('<bundle...>', 'bundle files, one per member log')
    .option('--all-signatures', "check every entry's own signature too (slower)")
    .option('--members <file>', 'trusted members: the consortium document or a JSON list of members')
    .option('--previous <file...>', 'signed checkpoints seen earlier; the bundles must extend them')
    .option('--min-cosignatures <n>', 'fail a log whose latest checkpoint has fewer cosignatures', (v) =>
      Number(v),
    )
    .option('--json', 'print the full report as JSON')
    .action(async (files: string[], o: AuditVerifyOptions) => {
      const code = await runAuditVerify(files, o)
      if (code !== 0) process.exitCode = code
    })
}
