/**
 * The in-memory dataset: ids, optional 0/1 labels and a dense row-major Float64Array of feature values
 * (missing = NaN, only in nullable columns). Categorical columns hold codes: the number itself when the cells
 * were numeric, else an index into `categories[name]`.
 */
import { SyndicateError } from '../../crypto/errors.ts'
import type { DatasetSchema } from './schema.ts'

export interface Dataset {
  schema: DatasetSchema
  ids: string[]
  y?: Uint8Array
  /** rows × featureNames.length, row-major. */
  X: Float64Array
  featureNames: string[]
  /** For categorical columns whose cells were text: code i stands for categories[name][i]. */
  categories: Record<string, string[]>
}

export function rowCount(ds: Dataset): number {
  return ds.ids.length
}

/** The rows at `indices`, in that order. */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const d = ds.featureNames.length
  const X = new Float64Array(indices.length * d)
  const ids: string[] = new Array(indices.length)
  const y = ds.y ? new Uint8Array(indices.length) : undefined
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]
    X.set(ds.X.subarray(i * d, i * d + d), k * d)
    ids[k] = ds.ids[i]
    if (y && ds.y) y[k] = ds.y[i]
  }
  return { ...ds, ids, y, X }
}

/**
 * The feature matrix in the column order `features` (a model's input order), row-major. Fails with the list
 * of missing names rather than silently scoring the wrong columns.
 */
export function featureMatrix(ds: Dataset, features: string[]): Float64Array {
  const d = ds.featureNames.length
  const pos = features.map((f) => ds.featureNames.indexOf(f))
  const missing = features.filter((_, j) => pos[j] < 0)
  if (missing.length > 0) {
    throw new SyndicateError(
      'ERR_DATA_MISSING_FEATURES',
      `The dataset lacks feature column(s) ${missing.join(', ')} that the model expects; load a file with these columns.`,
      { missing },
    )
  }
  const n = ds.ids.length
  if (pos.every((p, j) => p === j) && features.length === d) return ds.X
  const out = new Float64Array(n * features.length)
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < pos.length; j++) out[i * pos.length + j] = ds.X[i * d + pos[j]]
  }
  return out
}

/** Labels, or a clear error when the dataset has none (a features-only party). */
/** The same rows with only the `features` columns, in that order (ids and labels kept). */
export function selectColumns(ds: Dataset, features: string[]): Dataset {
  const X = featureMatrix(ds, features)
  const byName = new Map(ds.schema.columns.map((c) => [c.name, c]))
  return {
    ...ds,
    X,
    featureNames: [...features],
    schema: { ...ds.schema, columns: features.map((f) => byName.get(f)!) },
    categories: Object.fromEntries(Object.entries(ds.categories).filter(([k]) => features.includes(k))),
  }
}

export function requireLabels(ds: Dataset): Uint8Array {
  if (!ds.y) {
    throw new SyndicateError(
      'ERR_DATA_NO_LABEL',
      'This dataset has no label column; training and evaluation need one (set `label` when loading).',
    )
  }
  return ds.y
}

export interface JoinOptions {
  /** Prefixes for the feature names of the left and right datasets, e.g. ['guest_', 'host_']. */
  prefixes?: [string, string]
}

/**
 * Vertical join: the customers present in both datasets (inner join on id, in the left dataset's order),
 * with the left features followed by the right features. At most one side may carry a label.
 */
export function joinOnId(left: Dataset, right: Dataset, opts: JoinOptions = {}): Dataset {
  const [pl, pr] = opts.prefixes ?? ['', '']
  return join(prefixColumns(left, pl), prefixColumns(right, pr))
}

/** The same rows with every feature column renamed `prefix + name` (schema, names and category lists). */
export function prefixColumns(ds: Dataset, prefix: string): Dataset {
  if (prefix === '') return ds
  return {
    ...ds,
    schema: { ...ds.schema, columns: ds.schema.columns.map((c) => ({ ...c, name: prefix + c.name })) },
    featureNames: ds.featureNames.map((n) => prefix + n),
    categories: Object.fromEntries(Object.entries(ds.categories).map(([k, v]) => [prefix + k, v])),
  }
}

function join(left: Dataset, right: Dataset): Dataset {
  if (left.y && right.y) {
    throw new SyndicateError(
      'ERR_DATA_JOIN_LABELS',
      'Both datasets carry a label column; in a vertical join only one party holds the label. Load one side without `label`.',
    )
  }
  const namesL = left.featureNames
  const namesR = right.featureNames
  const clash = namesL.filter((n) => namesR.includes(n))
  if (clash.length > 0) {
    throw new SyndicateError(
      'ERR_DATA_JOIN_COLUMNS',
      `Both datasets have feature column(s) ${clash.slice(0, 5).join(', ')}; pass prefixes (e.g. ['guest_', 'host_']) to tell them apart.`,
      { clash },
    )
  }
  const rightIndex = new Map<string, number>()
  right.ids.forEach((id, i) => {
    rightIndex.set(id, i)
  })
  const dl = namesL.length
  const dr = namesR.length
  const d = dl + dr
  const pairs: [number, number][] = []
  left.ids.forEach((id, i) => {
    const j = rightIndex.get(id)
    if (j !== undefined) pairs.push([i, j])
  })
  const X = new Float64Array(pairs.length * d)
  const ids: string[] = new Array(pairs.length)
  const labelled = left.y ?? right.y
  const y = labelled ? new Uint8Array(pairs.length) : undefined
  pairs.forEach(([i, j], k) => {
    X.set(left.X.subarray(i * dl, i * dl + dl), k * d)
    X.set(right.X.subarray(j * dr, j * dr + dr), k * d + dl)
    ids[k] = left.ids[i]
    if (y) y[k] = left.y ? left.y[i] : right.y![j]
  })
  return {
    schema: {
      id: left.schema.id,
      label: left.schema.label ?? right.schema.label,
      columns: [...left.schema.columns, ...right.schema.columns],
    },
    ids,
    y,
    X,
    featureNames: [...namesL, ...namesR],
    categories: { ...left.categories, ...right.categories },
  }
}

/**
 * Horizontal concatenation: the same columns for different customers (e.g. several institutions' files
 * pooled). Feature names and types must match exactly and ids must stay unique.
 */
export function concatRows(parts: Dataset[]): Dataset {
  if (parts.length === 0) throw new SyndicateError('ERR_DATA_EMPTY', 'concatRows needs at least one dataset.')
  const first = parts[0]
  const d = first.featureNames.length
  for (const p of parts.slice(1)) {
    const same =
      p.featureNames.length === d &&
      p.schema.columns.every(
        (c, j) => c.name === first.schema.columns[j].name && c.type === first.schema.columns[j].type,
      )
    if (!same) {
      throw new SyndicateError(
        'ERR_DATA_CONCAT_COLUMNS',
        `Datasets to pool must have the same feature columns and types in the same order; got [${p.featureNames.join(', ')}] vs [${first.featureNames.join(', ')}].`,
      )
    }
    if (Boolean(p.y) !== Boolean(first.y)) {
      throw new SyndicateError(
        'ERR_DATA_CONCAT_LABELS',
        'Either all pooled datasets carry labels or none does.',
      )
    }
    if (JSON.stringify(p.categories) !== JSON.stringify(first.categories)) {
      throw new SyndicateError(
        'ERR_DATA_CONCAT_CATEGORIES',
        'Pooled datasets encode their text categories differently; one-hot encode with a shared category list first.',
      )
    }
  }
  const n = parts.reduce((s, p) => s + p.ids.length, 0)
  const X = new Float64Array(n * d)
  const y = first.y ? new Uint8Array(n) : undefined
  const ids: string[] = []
  const seen = new Set<string>()
  let off = 0
  for (const p of parts) {
    X.set(p.X, off * d)
    if (y && p.y) y.set(p.y, off)
    for (const id of p.ids) {
      if (seen.has(id)) {
        throw new SyndicateError(
          'ERR_DATA_DUPLICATE_ID',
          `Customer id "${id}" appears in more than one pooled dataset.`,
          {
            id,
          },
        )
      }
      seen.add(id)
      ids.push(id)
    }
    off += p.ids.length
  }
  return {
    schema: {
      ...first.schema,
      columns: first.schema.columns.map((c, j) => ({
        ...c,
        nullable: parts.some((p) => p.schema.columns[j].nullable),
      })),
    },
    ids,
    y,
    X,
    featureNames: [...first.featureNames],
    categories: first.categories,
  }
}
