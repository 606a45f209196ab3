/**
 * One-hot encoding of categorical columns as a dataset transform: column c with fitted codes [v1..vk] becomes
 * indicator columns "c=v1" … "c=vk" (a code unseen in training gives all zeros; missing gives NaN in every
 * indicator, for the model's imputation to handle). The fitted spec is plain data, saved beside the model.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import type { Dataset } from '../data/dataset.ts'
import type { ColumnSchema } from '../data/schema.ts'

export interface OneHotSpec {
  columns: { name: string; codes: number[] }[]
}

/** Codes seen in training for the given columns (default: every column typed categorical). */
export function fitOneHot(ds: Dataset, columns?: string[]): OneHotSpec {
  const names = columns ?? ds.schema.columns.filter((c) => c.type === 'categorical').map((c) => c.name)
  const d = ds.featureNames.length
  return {
    columns: names.map((name) => {
      const j = ds.featureNames.indexOf(name)
      if (j < 0)
        throw new SyndicateError('ERR_DATA_MISSING_FEATURES', `No column "${name}" to one-hot encode.`)
      const seen = new Set<number>()
      for (let i = 0; i < ds.ids.length; i++) {
        const v = ds.X[i * d + j]
        if (!Number.isNaN(v)) seen.add(v)
      }
      return { name, codes: [...seen].sort((a, b) => a - b) }
    }),
  }
}

/** Column name of the indicator for `code`, using the text category when the column had text cells. */
export function indicatorName(ds: Dataset, name: string, code: number): string {
  const text = ds.categories[name]
  return `${name}=${text ? text[code] : code}`
}

export function applyOneHot(ds: Dataset, spec: OneHotSpec): Dataset {
  const d = ds.featureNames.length
  const n = ds.ids.length
  const encoded = new Map(spec.columns.map((c) => [c.name, c.codes]))
  const outCols: ColumnSchema[] = []
  // For every output column: source column and, for an indicator, its code.
  const source: { j: number; code?: number }[] = []
  ds.schema.columns.forEach((c, j) => {
    const codes = encoded.get(c.name)
    if (!codes) {
      outCols.push(c)
      source.push({ j })
      return
    }
    for (const code of codes) {
      outCols.push({ name: indicatorName(ds, c.name, code), type: 'numeric', nullable: c.nullable })
      source.push({ j, code })
    }
  })
  const m = outCols.length
  const X = new Float64Array(n * m)
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < m; k++) {
      const { j, code } = source[k]
      const v = ds.X[i * d + j]
      X[i * m + k] = code === undefined || Number.isNaN(v) ? v : v === code ? 1 : 0
    }
  }
  const categories = Object.fromEntries(Object.entries(ds.categories).filter(([k]) => !encoded.has(k)))
  return {
    ...ds,
    schema: { ...ds.schema, columns: outCols },
    X,
    featureNames: outCols.map((c) => c.name),
    categories,
  }
}
