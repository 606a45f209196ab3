/**
 * Dataset schemas: which column is the customer id, which is the label, and the type of every feature column.
 * The schema hash is what the governance log records for a dataset registration (never the data itself).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'

export type ColumnType = 'numeric' | 'categorical'

export interface ColumnSchema {
  name: string
  type: ColumnType
  /** Missing cells are allowed (read as NaN) only when a column opts in. */
  nullable: boolean
}

export interface DatasetSchema {
  id: string
  /** Binary 0/1 label column; absent for a party that holds features only. */
  label?: string
  /** Feature columns in file order (the id and label columns are not listed). */
  columns: ColumnSchema[]
}

/** Per-column overrides a user passes to the loader; unspecified columns are inferred. */
export interface ColumnOverride {
  type?: ColumnType
  nullable?: boolean
}

/**
 * Canonical JSON: fixed key order, columns in file order, every field explicit. Two parties describing the
 * same columns get byte-identical text and so the same hash.
 */
export function canonicalSchemaJson(schema: DatasetSchema): string {
  return JSON.stringify({
    columns: schema.columns.map((c) => ({ name: c.name, nullable: c.nullable, type: c.type })),
    id: schema.id,
    label: schema.label ?? null,
  })
}

/** SHA-256 over the canonical schema JSON, lower-case hex. */
export function schemaHash(schema: DatasetSchema): string {
  return bytesToHex(sha256(utf8ToBytes(canonicalSchemaJson(schema))))
}
