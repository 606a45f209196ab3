/**
 * HTTP routes of the model registry and scorer, as a Hono sub-app (the node mounts it at /v1/models behind
 * its bearer-token auth). Errors are JSON `{ error: { code, message, problems } }`; every invalid row field
 * of a scoring request is listed in `problems`.
 */

import { parse } from 'csv-parse/sync'
import { Hono, type HonoRequest } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { z } from 'zod'
import { isSyndicateError } from '../../../crypto/errors.ts'
import {
  MODEL_ID,
  MODEL_STATES,
  type ModelRecord,
  type ModelRegistry,
  type ModelVersion,
} from './registry.ts'
import type { Deployment, Scorer } from './scorer.ts'
import { csvObjects, type Problem } from './validate.ts'

export interface ModelRoutesDeps {
  registry: ModelRegistry
  scorer: Scorer
  /** Most rows in one scoring request (default 10,000). */
  maxBatchRows?: number
  /** Largest request body (default 64 MiB: a 10,000-row batch or an imported model). */
  maxBodyBytes?: number
}

/** At most this many problems are listed; the message gives the total. */
const MAX_PROBLEMS = 10_000

class HttpError extends Error {
  readonly status: ContentfulStatusCode
  readonly code: string
  readonly problems: Problem[]
  constructor(status: ContentfulStatusCode, code: string, message: string, problems: Problem[] = []) {
    super(message)
    this.status = status
    this.code = code
    this.problems = problems
  }
}

const STATUS: Record<string, ContentfulStatusCode> = {
  ERR_MODEL_NOT_FOUND: 404,
  ERR_MODEL_VERSION_NOT_FOUND: 404,
  ERR_MODEL_STATE_TRANSITION: 409,
  ERR_MODEL_NOT_LIVE: 409,
  ERR_MODEL_STORE_CORRUPT: 500,
}

const importSchema = z.strictObject({
  id: z.string().regex(MODEL_ID, 'must be 1-64 letters, digits, ".", "_" or "-"'),
  onnx: z.base64().min(1),
  features: z.array(z.string().min(1).max(200)).min(1).max(10_000),
  cutoff: z.number().min(0).max(1).optional(),
  description: z.string().max(2000).optional(),
  lineage: z
    .strictObject({
      trainingJobId: z.string().max(200).optional(),
      datasetSchemaHashes: z.array(z.string().max(200)).max(100).optional(),
      metrics: z.record(z.string(), z.number()).optional(),
    })
    .optional(),
})

/** Reason codes per row: default 4 for one row; batches ask explicitly (TreeSHAP costs milliseconds a row). */
const reasonsSchema = z.coerce.number().int().min(0).max(20).optional()

const stateSchema = z.strictObject({ version: z.number().int().positive(), state: z.enum(MODEL_STATES) })

/** zod issues of a request body as problems (no row: the body is one object). */
function bodyProblems(error: z.ZodError): Problem[] {
  return error.issues.map((i) => ({ row: null, field: i.path.join('.') || null, problem: i.message }))
}

function invalid(problems: Problem[], what = 'The request'): never {
  const listed = problems.slice(0, MAX_PROBLEMS)
  const more = problems.length > listed.length ? ` (first ${listed.length} of ${problems.length} listed)` : ''
  throw new HttpError(
    400,
    'ERR_VALIDATION',
    `${what} has ${problems.length} problem(s)${more}; fix them and resend.`,
    listed,
  )
}

async function jsonBody(req: { json(): Promise<unknown> }): Promise<unknown> {
  try {
    return await req.json()
  } catch {
    throw new HttpError(
      400,
      'ERR_BAD_JSON',
      'The body is not valid JSON (NaN and Infinity are not JSON; use null for a missing value where allowed).',
    )
  }
}

/** Version metadata without the fitted model data (large; reachable through the training job). */
function publicVersion(v: ModelVersion) {
  const { model: _model, ...rest } = v
  return rest
}

function summary(r: ModelRecord) {
  const live = r.versions.find((v) => v.state === 'live')
  const latest = r.versions[r.versions.length - 1]
  return {
    id: r.id,
    createdAt: r.createdAt,
    versions: r.versions.length,
    liveVersion: live?.version ?? null,
    latest: publicVersion(latest),
  }
}

/**
 * CSV text as a header (feature names) and records. Text without quotes is split directly: without quotes
 * a field cannot contain a comma or a line break, and this is ~10x faster than csv-parse, which handles
 * the quoted case.
 */
function csvRecords(text: string, max: number): { header: string[]; records: string[][] } {
  let records: string[][]
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  if (!body.includes('"')) {
    records = body
      .split('\n')
      .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
      .filter((l) => l.trim() !== '')
      .map((l) => l.split(','))
  } else {
    try {
      records = parse(body, { skip_empty_lines: true, relax_column_count: true })
    } catch (e) {
      throw new HttpError(400, 'ERR_CSV', `The CSV cannot be parsed: ${(e as Error).message}`)
    }
  }
  if (records.length < 2)
    throw new HttpError(
      400,
      'ERR_CSV',
      'The CSV needs a header line of feature names and at least one data row.',
    )
  const header = records[0].map((h) => h.trim())
  const dup = header.filter((h, i) => header.indexOf(h) !== i)
  if (dup.length > 0)
    throw new HttpError(400, 'ERR_CSV', `The CSV header repeats column(s) ${dup.join(', ')}.`)
  tooMany(records.length - 1, max)
  const ragged = records.findIndex((r) => r.length !== header.length)
  if (ragged > 0) {
    throw new HttpError(
      400,
      'ERR_CSV',
      `CSV data row ${ragged - 1} has ${records[ragged].length} fields; the header has ${header.length}.`,
      [
        {
          row: ragged - 1,
          field: null,
          problem: `${records[ragged].length} fields, expected ${header.length}`,
        },
      ],
    )
  }
  return { header, records: records.slice(1) }
}

function tooMany(n: number, max: number): void {
  if (n > max) {
    throw new HttpError(
      400,
      'ERR_BATCH_TOO_LARGE',
      `The batch has ${n} rows; at most ${max} are scored per request. Split it.`,
      [{ row: null, field: null, problem: `${n} rows > ${max}` }],
    )
  }
}

export function modelRoutes(deps: ModelRoutesDeps): Hono {
  const { registry, scorer } = deps
  const maxRows = deps.maxBatchRows ?? 10_000
  const app = new Hono()

  app.onError((err, c) => {
    if (err instanceof HttpError) {
      return c.json({ error: { code: err.code, message: err.message, problems: err.problems } }, err.status)
    }
    if (isSyndicateError(err)) {
      const status = STATUS[err.code] ?? 400
      return c.json({ error: { code: err.code, message: err.message, problems: [] } }, status)
    }
    return c.json(
      {
        error: {
          code: 'ERR_INTERNAL',
          message: 'Internal error while handling a model request; see the node log.',
          problems: [],
        },
      },
      500,
    )
  })

  app.use(
    bodyLimit({
      maxSize: deps.maxBodyBytes ?? 64 * 1024 * 1024,
      onError: (c) =>
        c.json(
          {
            error: {
              code: 'ERR_BODY_TOO_LARGE',
              message: 'The request body is too large; send smaller batches.',
              problems: [],
            },
          },
          413,
        ),
    }),
  )

  app.get('/', async (c) => c.json({ models: (await registry.list()).map(summary) }))

  app.get('/:id', async (c) => {
    const r = await registry.get(c.req.param('id'))
    return c.json({ ...summary(r), versions: r.versions.map(publicVersion) })
  })

  app.post('/', async (c) => {
    const parsed = importSchema.safeParse(await jsonBody(c.req))
    if (!parsed.success) invalid(bodyProblems(parsed.error))
    const b = parsed.data
    const v = await registry.register({ ...b, onnx: Buffer.from(b.onnx, 'base64') })
    return c.json({ id: b.id, ...publicVersion(v) }, 201)
  })

  app.post('/:id/state', async (c) => {
    const parsed = stateSchema.safeParse(await jsonBody(c.req))
    if (!parsed.success) invalid(bodyProblems(parsed.error))
    const v = await registry.setState(c.req.param('id'), parsed.data.version, parsed.data.state)
    return c.json({ id: c.req.param('id'), ...publicVersion(v) })
  })

  app.post('/:id/score', async (c) => {
    const id = c.req.param('id')
    const dep = await scorer.acquire(id)
    try {
      return c.json(await score(c.req, dep))
    } finally {
      scorer.release(dep)
    }
  })

  /** Parses, validates and scores one request against an acquired deployment. */
  async function score(req: HonoRequest, dep: Deployment) {
    const d = dep.version.features.length
    const csv = (req.header('content-type') ?? '').toLowerCase().startsWith('text/csv')
    const reasonsParam = reasonsSchema.safeParse(req.query('reasons'))
    if (!reasonsParam.success) {
      invalid([{ row: null, field: 'reasons', problem: 'query parameter reasons must be an integer 0..20' }])
    }
    let rows: readonly unknown[]
    let single = false
    let input: Float32Array
    if (csv) {
      const { header, records } = csvRecords(await req.text(), maxRows)
      input = new Float32Array(records.length * d)
      if (!dep.validator.fillRecords(header, records, input)) {
        invalid(dep.validator.problems(csvObjects(header, records)), 'The CSV')
      }
      rows = records
    } else {
      const body = (await jsonBody(req)) as { row?: unknown; rows?: unknown } | null
      const keys = body !== null && typeof body === 'object' ? Object.keys(body) : []
      if (keys.length === 1 && keys[0] === 'row') {
        rows = [body!.row]
        single = true
      } else if (keys.length === 1 && keys[0] === 'rows' && Array.isArray(body!.rows)) {
        rows = body!.rows
      } else {
        invalid(
          [
            {
              row: null,
              field: null,
              problem: 'expected a JSON object { "row": {...} } or { "rows": [ {...}, ... ] }',
            },
          ],
          'The body',
        )
      }
      tooMany(rows.length, maxRows)
      if (rows.length === 0) invalid([{ row: null, field: 'rows', problem: 'no rows to score' }])
      input = single ? scorer.takeBuffer(dep) : new Float32Array(rows.length * d)
    }
    try {
      if (!csv && !dep.validator.fill(rows, input))
        invalid(dep.validator.problems(rows), 'The scoring request')
      const probs = await scorer.run(dep, input, rows.length)
      const results = scorer.results(dep, input, probs, rows.length, reasonsParam.data ?? (single ? 4 : 0))
      const head = { model: dep.id, version: dep.version.version }
      return single ? { ...head, ...results[0] } : { ...head, results }
    } finally {
      if (single) scorer.releaseBuffer(dep, input)
    }
  }

  return app
}
