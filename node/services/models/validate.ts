/**
 * Validation of scoring rows against a model's feature schema. The zod schema is the definition of a valid
 * row and produces the problem list; a hand-written fast path that accepts exactly the same rows fills the
 * float32 input directly, so a valid request never pays for zod (a property test checks they agree).
 */
import { z } from 'zod'

export interface Problem {
  /** Index of the row in the request (0 = first data row of a CSV), null for the whole request. */
  row: number | null
  field: string | null
  problem: string
}

/** Largest finite float32: the model's input type; larger values would become Infinity. */
export const FLOAT32_MAX = 3.4028234663852886e38

export interface RowValidator {
  readonly features: string[]
  readonly allowMissing: boolean
  /** Writes `rows` into `out` (row-major) when every row is valid; false at the first invalid row. */
  fill(rows: readonly unknown[], out: Float32Array): boolean
  /** `fill` for CSV records under `header`: the same acceptance as `fill` on the rows `csvObjects` makes. */
  fillRecords(header: readonly string[], records: readonly string[][], out: Float32Array): boolean
  /** Every problem of `rows` (empty when valid). */
  problems(rows: readonly unknown[]): Problem[]
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`
  return typeof v
}

/** `allowMissing`: null marks a missing value (NaN), which the model's imputation or trees handle. */
export function rowValidator(features: string[], allowMissing: boolean): RowValidator {
  const num = z.number().min(-FLOAT32_MAX).max(FLOAT32_MAX)
  const cell = allowMissing ? num.nullable() : num
  const schema = z.array(z.strictObject(Object.fromEntries(features.map((f) => [f, cell]))))
  const d = features.length
  const expected = allowMissing ? 'a number or null' : 'a number'

  const fill = (rows: readonly unknown[], out: Float32Array): boolean => {
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]
      if (typeof r !== 'object' || r === null || Array.isArray(r)) return false
      let keys = 0
      for (const _ in r) keys++
      if (keys !== d) return false
      const o = i * d
      for (let j = 0; j < d; j++) {
        const v = (r as Record<string, unknown>)[features[j]]
        if (typeof v === 'number' && v >= -FLOAT32_MAX && v <= FLOAT32_MAX) out[o + j] = v
        else if (v === null && allowMissing) out[o + j] = Number.NaN
        else return false
      }
    }
    return true
  }

  const fillRecords = (
    header: readonly string[],
    records: readonly string[][],
    out: Float32Array,
  ): boolean => {
    if (header.length !== d) return false
    const col = features.map((f) => header.indexOf(f))
    if (col.some((c) => c < 0)) return false
    for (let i = 0; i < records.length; i++) {
      const rec = records[i]
      const o = i * d
      for (let j = 0; j < d; j++) {
        const v = csvCell(rec[col[j]])
        if (typeof v === 'number' && v >= -FLOAT32_MAX && v <= FLOAT32_MAX) out[o + j] = v
        else if (v === null && allowMissing) out[o + j] = Number.NaN
        else return false
      }
    }
    return true
  }

  const problems = (rows: readonly unknown[]): Problem[] => {
    const res = schema.safeParse(rows)
    if (res.success) return []
    const out: Problem[] = []
    for (const issue of res.error.issues) {
      const row = typeof issue.path[0] === 'number' ? issue.path[0] : null
      const field = typeof issue.path[1] === 'string' ? issue.path[1] : null
      const value = row !== null && field !== null ? (rows[row] as Record<string, unknown>)[field] : undefined
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys)
          out.push({ row, field: k, problem: 'unknown field (not a feature of this model)' })
      } else if (field === null) {
        out.push({
          row,
          field,
          problem: `expected an object of feature values, got ${describe(rows[row ?? 0])}`,
        })
      } else if (!Object.hasOwn(rows[row!] as object, field)) {
        out.push({ row, field, problem: `missing field (expected ${expected})` })
      } else if (typeof value === 'number') {
        out.push({
          row,
          field,
          problem: Number.isFinite(value) ? 'outside the float32 range' : `not a finite number (${value})`,
        })
      } else {
        out.push({ row, field, problem: `wrong type: expected ${expected}, got ${describe(value)}` })
      }
    }
    return out
  }
  return { features, allowMissing, fill, fillRecords, problems }
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
const NON_FINITE = /^([+-]?)(nan|inf|infinity)$/i

/** CSV records under `header` as row objects (for the zod problem list). */
export function csvObjects(
  header: readonly string[],
  records: readonly string[][],
): Record<string, unknown>[] {
  return records.map((rec) => Object.fromEntries(header.map((h, j) => [h, csvCell(rec[j])])))
}

/**
 * One CSV cell as a JSON-like value: empty → null (missing), a decimal number → number, NaN/Inf spellings →
 * the non-finite number (so validation names the problem), anything else stays a string (a type error).
 */
export function csvCell(cell: string): number | string | null {
  if (isDecimalCharset(cell)) {
    // Over this charset Number() accepts exactly the decimal literals (no hex, no Infinity, no "").
    const v = Number(cell)
    if (!Number.isNaN(v)) return v
  }
  const t = cell.trim()
  if (t === '') return null
  if (NUMBER.test(t)) return Number(t)
  const m = NON_FINITE.exec(t)
  if (m) return m[2].toLowerCase() === 'nan' ? Number.NaN : m[1] === '-' ? -Infinity : Infinity
  return cell
}

/** Non-empty and only digits, '.', '+', '-', 'e', 'E': the fast path for the common cell (no regex). */
function isDecimalCharset(s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 48 && c <= 57) || c === 46 || c === 45 || c === 43 || c === 101 || c === 69)) return false
  }
  return true
}
