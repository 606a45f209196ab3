/**
 * `syndicate score`: scores a CSV file or one JSON row with a node's live model over its HTTP API
 * (POST /v1/models/:id/score), in batches. The node's API is strict (only the model's features), so the
 * command sends just those columns and carries an id column through to the output.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { parse } from 'csv-parse/sync'
import { SyndicateError } from '../../../crypto/errors.ts'
import type { Problem } from './validate.ts'

export interface ScoreCommandOptions {
  /** Model id. */
  model: string
  /** CSV file with a header; columns other than the model's features are ignored (see `idColumn`). */
  file?: string
  /** One row as a JSON object of feature values (instead of `file`). */
  row?: string
  /** Output CSV path (default: standard output). */
  out?: string
  /** Column copied to the output to identify rows (default `id` when the file has one). */
  idColumn?: string
  /** Rows per request (default 10,000, the node's default maximum). */
  batchSize?: number
  /** Reason codes per row (node default: 4 for --row, none for files; TreeSHAP costs ms per row). */
  reasons?: number
}

export interface ApiTarget {
  /** The node's API root, e.g. http://127.0.0.1:8080 (routes are under /v1/models). */
  baseUrl: string
  token: string
  fetch?: typeof fetch
}

interface ScoreResult {
  probability: number
  decision: number
  reasons: { feature: string; contribution: number }[]
}

interface ApiError {
  error?: { code?: string; message?: string; problems?: Problem[] }
}

async function call<T>(api: ApiTarget, path: string, init: RequestInit = {}): Promise<T> {
  const url = `${api.baseUrl.replace(/\/+$/, '')}/v1/models${path}`
  let res: Response
  try {
    res = await (api.fetch ?? fetch)(url, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${api.token}` },
    })
  } catch (e) {
    throw new SyndicateError(
      'ERR_API_UNREACHABLE',
      `Cannot reach the node at ${api.baseUrl} (${(e as Error).message}); is it running?`,
      undefined,
      { cause: e },
    )
  }
  const body = (await res.json().catch(() => ({}))) as T & ApiError
  if (!res.ok) {
    const e = body.error ?? {}
    throw new SyndicateError(
      e.code ?? `ERR_HTTP_${res.status}`,
      e.message ?? `The node answered HTTP ${res.status}.`,
      { status: res.status, problems: e.problems ?? [] },
    )
  }
  return body
}

function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v
}

function formatReasons(r: ScoreResult['reasons']): string {
  return r.map((x) => `${x.feature}:${x.contribution.toFixed(4)}`).join(';')
}

/** Runs the command; returns the number of rows scored. Output goes to `opts.out` or `write`. */
export async function scoreCommand(
  opts: ScoreCommandOptions,
  api: ApiTarget,
  write: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const id = encodeURIComponent(opts.model)
  const query = opts.reasons === undefined ? '' : `?reasons=${opts.reasons}`
  if (opts.row !== undefined) {
    let row: unknown
    try {
      row = JSON.parse(opts.row)
    } catch {
      throw new SyndicateError(
        'ERR_CLI_ROW',
        '--row must be a JSON object of feature values, e.g. \'{"x0": 1.5, "x1": 0}\'.',
      )
    }
    const res = await call<unknown>(api, `/${id}/score${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ row }),
    })
    write(`${JSON.stringify(res)}\n`)
    return 1
  }
  if (!opts.file)
    throw new SyndicateError('ERR_CLI_INPUT', 'Give a CSV file (--file) or one JSON row (--row).')
  let records: string[][]
  try {
    records = parse(readFileSync(opts.file, 'utf8'), { bom: true, skip_empty_lines: true })
  } catch (e) {
    throw new SyndicateError(
      'ERR_CLI_INPUT',
      `Cannot read ${opts.file} as CSV: ${(e as Error).message}`,
      undefined,
      { cause: e },
    )
  }
  const header = (records.shift() ?? []).map((h) => h.trim())
  const info = await call<{
    liveVersion: number | null
    versions: { version: number; features: string[] }[]
  }>(api, `/${id}`)
  const live = info.versions.find((v) => v.version === info.liveVersion)
  if (!live)
    throw new SyndicateError('ERR_MODEL_NOT_LIVE', `Model "${opts.model}" has no live version on this node.`)
  const cols = live.features.map((f) => header.indexOf(f))
  const missing = live.features.filter((_, j) => cols[j] < 0)
  if (missing.length > 0) {
    throw new SyndicateError(
      'ERR_CLI_INPUT',
      `${opts.file} lacks the model's feature column(s) ${missing.join(', ')}.`,
    )
  }
  const idCol = header.indexOf(opts.idColumn ?? 'id')
  if (opts.idColumn && idCol < 0)
    throw new SyndicateError('ERR_CLI_INPUT', `${opts.file} has no column ${opts.idColumn}.`)
  const size = opts.batchSize ?? 10_000
  const lines = [`${idCol >= 0 ? `${csvField(header[idCol])},` : ''}probability,decision,reasons`]
  for (let start = 0; start < records.length; start += size) {
    const chunk = records.slice(start, start + size)
    const csv = [
      live.features.map(csvField).join(','),
      ...chunk.map((r) => cols.map((c) => csvField(r[c] ?? '')).join(',')),
    ].join('\n')
    let res: { results: ScoreResult[] }
    try {
      res = await call(api, `/${id}/score${query}`, {
        method: 'POST',
        headers: { 'content-type': 'text/csv' },
        body: csv,
      })
    } catch (e) {
      // Problems name rows within the batch; report them as data rows of the file (1 = first after the header).
      const problems = ((e as SyndicateError).details?.problems ?? []) as Problem[]
      const shown = problems
        .slice(0, 20)
        .map((p) => `  row ${p.row === null ? '-' : start + p.row + 1}, ${p.field ?? '-'}: ${p.problem}`)
      if (shown.length > 0)
        (e as Error).message +=
          `\n${shown.join('\n')}${problems.length > 20 ? `\n  … ${problems.length - 20} more` : ''}`
      throw e
    }
    res.results.forEach((r, i) => {
      const idPart = idCol >= 0 ? `${csvField(chunk[i][idCol])},` : ''
      lines.push(`${idPart}${r.probability},${r.decision},${csvField(formatReasons(r.reasons))}`)
    })
  }
  const text = `${lines.join('\n')}\n`
  if (opts.out) writeFileSync(opts.out, text)
  else write(text)
  return records.length
}
