/** Per-column summary statistics for dataset registration (what a partner sees of a dataset, never its rows). */
import type { Dataset } from './dataset.ts'
import type { ColumnType } from './schema.ts'

/** Linear-interpolated quantile of ascending values (numpy's default method). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  const pos = (n - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.min(n - 1, lo + 1)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
}

export const SUMMARY_QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]

export interface ColumnStats {
  name: string
  type: ColumnType
  count: number
  missing: number
  mean: number
  /** Population standard deviation (divides by count). */
  std: number
  min: number
  max: number
  /** Values at SUMMARY_QUANTILES, keyed 'p1', 'p5', 'p25', 'p50', 'p75', 'p95', 'p99'. */
  quantiles: Record<string, number>
  distinct: number
}

/** Statistics of one column given its values (NaN = missing). */
export function columnStats(name: string, type: ColumnType, values: Float64Array): ColumnStats {
  const present = values.filter((v) => !Number.isNaN(v)).sort()
  const count = present.length
  let sum = 0
  for (const v of present) sum += v
  const mean = count > 0 ? sum / count : Number.NaN
  let ss = 0
  for (const v of present) ss += (v - mean) * (v - mean)
  let distinct = 0
  for (let i = 0; i < count; i++) if (i === 0 || present[i] !== present[i - 1]) distinct++
  const quantiles: Record<string, number> = {}
  for (const q of SUMMARY_QUANTILES) quantiles[`p${Math.round(q * 100)}`] = quantileSorted(present, q)
  return {
    name,
    type,
    count,
    missing: values.length - count,
    mean,
    std: count > 0 ? Math.sqrt(ss / count) : Number.NaN,
    min: count > 0 ? present[0] : Number.NaN,
    max: count > 0 ? present[count - 1] : Number.NaN,
    quantiles,
    distinct,
  }
}

/** One column of a row-major matrix. */
export function column(X: Float64Array, rows: number, d: number, j: number): Float64Array {
  const out = new Float64Array(rows)
  for (let i = 0; i < rows; i++) out[i] = X[i * d + j]
  return out
}

export interface DatasetStats {
  rows: number
  /** Share of label 1, when the dataset has labels. */
  positiveRate?: number
  columns: ColumnStats[]
}

export function datasetStats(ds: Dataset): DatasetStats {
  const n = ds.ids.length
  const d = ds.featureNames.length
  const columns = ds.schema.columns.map((c, j) => columnStats(c.name, c.type, column(ds.X, n, d, j)))
  const out: DatasetStats = { rows: n, columns }
  if (ds.y) out.positiveRate = ds.y.reduce((s, v) => s + v, 0) / n
  return out
}
