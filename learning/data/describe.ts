/**
 * What a node records when a user registers a dataset: the schema, its hash (for the governance log), the row
 * count and summary statistics. The rows themselves are read, summarised and dropped.
 */
import { loadCsv } from './csv.ts'
import type { Dataset } from './dataset.ts'
import type { ColumnOverride, DatasetSchema } from './schema.ts'
import { schemaHash } from './schema.ts'
import { type DatasetStats, datasetStats } from './stats.ts'

export interface DescribeOptions {
  id: string
  label?: string
  delimiter?: string
  schema?: Record<string, ColumnOverride>
}

export interface DatasetDescription {
  schema: DatasetSchema
  schemaHash: string
  rows: number
  stats: DatasetStats
}

export function describeDataset(file: string, opts: DescribeOptions): DatasetDescription {
  return describeRows(
    loadCsv(file, { id: opts.id, label: opts.label, delimiter: opts.delimiter, columns: opts.schema }),
  )
}

/** The description of rows already loaded. */
export function describeRows(ds: Dataset): DatasetDescription {
  return {
    schema: ds.schema,
    schemaHash: schemaHash(ds.schema),
    rows: ds.ids.length,
    stats: datasetStats(ds),
  }
}
