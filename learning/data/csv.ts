/**
 * CSV loading with a schema. Every problem a user can have with a file (empty file, wrong delimiter, ragged
 * rows, non-numeric or missing cells, duplicate ids, a bad label) is a SyndicateError that names the 1-based
 * line as an editor shows it and the column; nothing becomes a silent NaN. Missing cells are accepted only in
 * columns the caller marks nullable, and are then NaN.
 */
import { readFileSync } from 'node:fs'
import { parse } from 'csv-parse/sync'
import { SyndicateError } from '../../crypto/errors.ts'
import type { Dataset } from './dataset.ts'
import type { ColumnOverride, ColumnSchema, ColumnType, DatasetSchema } from './schema.ts'

export interface LoadOptions {
  /** Name of the customer id column (unique per row). */
  id: string
  /** Name of the binary 0/1 label column, if this party holds labels. */
  label?: string
  /** Field delimiter; default ','. */
  delimiter?: string
  /** Per-column type and nullability overrides; other columns are inferred (numeric unless text). */
  columns?: Record<string, ColumnOverride>
  /**
   * Known category lists for text-categorical columns (e.g. the training file's `dataset.categories`), so
   * that codes agree across files; values not in a list get new codes after the known ones.
   */
  categories?: Record<string, string[]>
}

const MISSING = new Set(['', 'na', 'n/a', 'nan', 'null', 'none', '?'])
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
const OTHER_DELIMITERS = [';', '\t', '|', ',']

function isMissing(cell: string): boolean {
  return MISSING.has(cell.trim().toLowerCase())
}

function parseNumber(cell: string): number | undefined {
  const t = cell.trim()
  return NUMBER.test(t) ? Number(t) : undefined
}

export function loadCsv(file: string, opts: LoadOptions): Dataset {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new SyndicateError(
      'ERR_DATA_READ',
      `Cannot read ${file}: ${(e as Error).message}`,
      { file },
      { cause: e },
    )
  }
  return parseCsv(text, opts, file)
}

interface Row {
  cells: string[]
  line: number
}

function readRows(text: string, delimiter: string, source: string): Row[] {
  if (text.trim() === '') {
    throw new SyndicateError('ERR_DATA_EMPTY', `${source} is empty; expected a header line and data rows.`, {
      source,
    })
  }
  try {
    const recs = parse(text, {
      bom: true,
      delimiter,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
    }) as unknown as { record: string[]; info: { lines: number } }[]
    return recs.map((r) => ({ cells: r.record, line: r.info.lines }))
  } catch (e) {
    const err = e as Error & { lines?: number }
    throw new SyndicateError(
      'ERR_DATA_CSV',
      `${source}: line ${err.lines ?? '?'}: ${err.message}. Fix the quoting on that line.`,
      { source, line: err.lines },
      { cause: e },
    )
  }
}

function where(source: string, line: number, column: string, index: number): string {
  return `${source}: line ${line}, column "${column}" (column ${index + 1})`
}

/** Parse CSV text; `source` names the file in error messages. */
export function parseCsv(text: string, opts: LoadOptions, source = '<csv>'): Dataset {
  const delimiter = opts.delimiter ?? ','
  const rows = readRows(text, delimiter, source)
  const header = rows[0].cells.map((h) => h.trim())
  const headerLine = rows[0].line
  if (header.length === 1) {
    const other = OTHER_DELIMITERS.find((c) => c !== delimiter && header[0].includes(c))
    if (other) {
      throw new SyndicateError(
        'ERR_DATA_DELIMITER',
        `${source}: the header on line ${headerLine} is one column when split on ${JSON.stringify(delimiter)} but contains ${JSON.stringify(other)}; the file looks ${JSON.stringify(other)}-separated: pass delimiter ${JSON.stringify(other)}.`,
        { source, line: headerLine, suggested: other },
      )
    }
  }
  const dup = header.find((h, i) => header.indexOf(h) !== i)
  if (dup !== undefined) {
    throw new SyndicateError(
      'ERR_DATA_HEADER',
      `${source}: column "${dup}" appears twice in the header (line ${headerLine}).`,
      {
        source,
        column: dup,
      },
    )
  }
  const need = [opts.id, ...(opts.label !== undefined ? [opts.label] : [])]
  for (const name of need) {
    if (!header.includes(name)) {
      throw new SyndicateError(
        'ERR_DATA_HEADER',
        `${source}: no column "${name}" in the header (line ${headerLine}); columns are ${header.join(', ')}.`,
        { source, column: name },
      )
    }
  }
  for (const name of Object.keys(opts.columns ?? {})) {
    if (!header.includes(name) || need.includes(name)) {
      throw new SyndicateError(
        'ERR_DATA_SCHEMA',
        `${source}: the schema override names "${name}", which is not a feature column of this file.`,
        { source, column: name },
      )
    }
  }
  if (rows.length < 2) {
    throw new SyndicateError('ERR_DATA_EMPTY', `${source} has a header but no data rows.`, { source })
  }
  const body = rows.slice(1)
  for (const r of body) {
    if (r.cells.length !== header.length) {
      const hint =
        r.cells.length === 1 && OTHER_DELIMITERS.some((c) => c !== delimiter && r.cells[0].includes(c))
          ? ' (the row looks separated by a different delimiter)'
          : ''
      throw new SyndicateError(
        'ERR_DATA_RAGGED',
        `${source}: line ${r.line} has ${r.cells.length} fields but the header has ${header.length}${hint}; fix or remove that line.`,
        { source, line: r.line, fields: r.cells.length, expected: header.length },
      )
    }
  }

  const idCol = header.indexOf(opts.id)
  const labelCol = opts.label !== undefined ? header.indexOf(opts.label) : -1
  const featureCols = header.map((_, j) => j).filter((j) => j !== idCol && j !== labelCol)
  const n = body.length
  const d = featureCols.length

  const ids: string[] = new Array(n)
  const firstLine = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const id = body[i].cells[idCol].trim()
    if (isMissing(id)) {
      throw new SyndicateError(
        'ERR_DATA_MISSING',
        `${where(source, body[i].line, opts.id, idCol)}: the id is empty.`,
        {
          source,
          line: body[i].line,
          column: opts.id,
        },
      )
    }
    const prev = firstLine.get(id)
    if (prev !== undefined) {
      throw new SyndicateError(
        'ERR_DATA_DUPLICATE_ID',
        `${where(source, body[i].line, opts.id, idCol)}: id "${id}" already appeared on line ${prev}; ids must be unique.`,
        { source, line: body[i].line, column: opts.id, firstLine: prev },
      )
    }
    firstLine.set(id, body[i].line)
    ids[i] = id
  }

  let y: Uint8Array | undefined
  if (labelCol >= 0) {
    y = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      const v = parseNumber(body[i].cells[labelCol])
      if (v !== 0 && v !== 1) {
        throw new SyndicateError(
          'ERR_DATA_LABEL',
          `${where(source, body[i].line, opts.label!, labelCol)}: the label must be 0 or 1, got ${JSON.stringify(body[i].cells[labelCol])}.`,
          { source, line: body[i].line, column: opts.label },
        )
      }
      y[i] = v
    }
  }

  const columns: ColumnSchema[] = featureCols.map((j) => {
    const name = header[j]
    const o = opts.columns?.[name] ?? {}
    return { name, type: o.type ?? inferType(body, j), nullable: o.nullable ?? false }
  })

  const X = new Float64Array(n * d)
  const categories: Record<string, string[]> = {}
  columns.forEach((col, k) => {
    const j = featureCols[k]
    const textCodes =
      col.type === 'categorical' &&
      body.some((r) => !isMissing(r.cells[j]) && parseNumber(r.cells[j]) === undefined)
    const codes = new Map<string, number>()
    if (textCodes) {
      const known = opts.categories?.[col.name] ?? []
      const seen = [...new Set(body.map((r) => r.cells[j].trim()).filter((c) => !isMissing(c)))].sort()
      const values = [...known, ...seen.filter((v) => !known.includes(v))]
      values.forEach((v, i) => {
        codes.set(v, i)
      })
      categories[col.name] = values
    }
    for (let i = 0; i < n; i++) {
      const cell = body[i].cells[j]
      let v: number | undefined
      if (isMissing(cell)) {
        if (!col.nullable) {
          throw new SyndicateError(
            'ERR_DATA_MISSING',
            `${where(source, body[i].line, col.name, j)}: the value is missing (${JSON.stringify(cell)}); fill it in, or mark the column nullable in the schema to allow missing values.`,
            { source, line: body[i].line, column: col.name },
          )
        }
        v = Number.NaN
      } else {
        v = textCodes ? codes.get(cell.trim()) : parseNumber(cell)
        if (v === undefined || !Number.isFinite(v)) {
          throw new SyndicateError(
            'ERR_DATA_NOT_NUMERIC',
            `${where(source, body[i].line, col.name, j)}: ${JSON.stringify(cell)} is not a number; fix the cell, or declare the column categorical in the schema.`,
            { source, line: body[i].line, column: col.name },
          )
        }
      }
      X[i * d + k] = v
    }
  })

  const schema: DatasetSchema = { id: opts.id, columns }
  if (opts.label !== undefined) schema.label = opts.label
  return { schema, ids, y, X, featureNames: columns.map((c) => c.name), categories }
}

/**
 * A column is categorical only when every present cell is text; a mostly numeric column with a stray text
 * cell stays numeric so that the stray cell is reported instead of silently turning the column into codes.
 */
function inferType(body: Row[], j: number): ColumnType {
  let present = 0
  for (const r of body) {
    const c = r.cells[j]
    if (isMissing(c)) continue
    present++
    if (parseNumber(c) !== undefined) return 'numeric'
  }
  return present > 0 ? 'categorical' : 'numeric'
}
