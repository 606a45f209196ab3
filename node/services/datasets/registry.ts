import { statSync } from 'node:fs'
import { resolve } from 'node:path'
import { Hono } from 'hono'
import { z } from 'zod'
import { SyndicateError } from '../../../crypto/errors.ts'
import { loadCsv } from '../../../learning/data/csv.ts'
import type { Dataset } from '../../../learning/data/dataset.ts'
import { type DatasetDescription, describeRows } from '../../../learning/data/describe.ts'
import { schemaHash } from '../../../learning/data/schema.ts'
import type { RouteDoc } from '../../http/app.ts'
import { parseBody } from '../../http/app.ts'
import type { NodeStore } from '../../store.ts'

/**
 * Registered datasets: a name for a local CSV file with its schema, schema hash and summary statistics. The
 * data stays in the file; the governance log records only the schema hash.
 */
export interface DatasetRecord extends DatasetDescription {
  name: string
  file: string
  idColumn: string
  labelColumn?: string
  delimiter?: string
  registeredAt: string
}

export const RegisterDatasetSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
      'a dataset name is 1-64 letters, digits, dot, dash or underscore',
    ),
  file: z.string().min(1).max(4096),
  id: z.string().min(1).max(128),
  label: z.string().min(1).max(128).optional(),
  delimiter: z.string().length(1).optional(),
  schema: z
    .record(
      z.string(),
      z.strictObject({
        type: z.enum(['numeric', 'categorical']).optional(),
        nullable: z.boolean().optional(),
      }),
    )
    .optional(),
})
export type RegisterDataset = z.infer<typeof RegisterDatasetSchema>

const SUBLEVEL = 'datasets'

export class DatasetRegistry {
  private readonly store: NodeStore
  private readonly onRegister: (rec: DatasetRecord) => Promise<void>
  /**
   * Parsed rows, kept while the file is unchanged: jobs and scoring read them without parsing the file again.
   * Callers treat a loaded dataset as read-only (subset and featureMatrix copy).
   */
  private readonly loaded = new Map<string, { stamp: string; data: Dataset }>()

  constructor(store: NodeStore, onRegister: (rec: DatasetRecord) => Promise<void>) {
    this.store = store
    this.onRegister = onRegister
  }

  async register(req: RegisterDataset): Promise<DatasetRecord> {
    const file = resolve(req.file)
    if (await this.get(req.name))
      throw new SyndicateError('ERR_CONFLICT', `a dataset named ${req.name} is already registered`)
    const rows = loadCsv(file, {
      id: req.id,
      label: req.label,
      delimiter: req.delimiter,
      columns: req.schema,
    })
    const description = describeRows(rows)
    const rec: DatasetRecord = {
      name: req.name,
      file,
      idColumn: req.id,
      ...(req.label ? { labelColumn: req.label } : {}),
      ...(req.delimiter ? { delimiter: req.delimiter } : {}),
      ...description,
      registeredAt: new Date().toISOString(),
    }
    await this.store.sub<DatasetRecord>(SUBLEVEL).put(req.name, rec)
    this.loaded.set(`${rec.name}\n${!!rec.labelColumn}`, { stamp: this.stamp(rec), data: rows })
    await this.onRegister(rec)
    return rec
  }

  /**
   * The rows of a registered dataset, parsed with its registered schema (with the label column when the
   * caller holds the label). Parsed again only when the file changed (modification time or size).
   */
  load(rec: DatasetRecord, withLabel: boolean): Dataset {
    const stamp = this.stamp(rec)
    const key = `${rec.name}\n${withLabel}`
    const hit = this.loaded.get(key)
    if (hit?.stamp === stamp) return hit.data
    const data = loadCsv(rec.file, {
      id: rec.idColumn,
      label: withLabel ? rec.labelColumn : undefined,
      delimiter: rec.delimiter,
      columns: Object.fromEntries(
        rec.schema.columns.map((c) => [c.name, { type: c.type, nullable: c.nullable }]),
      ),
    })
    if (withLabel === !!rec.labelColumn && schemaHash(data.schema) !== rec.schemaHash)
      throw new SyndicateError(
        'ERR_DATASET_FILE',
        `the columns of ${rec.file} changed since dataset ${rec.name} was registered; register it again`,
      )
    this.loaded.set(key, { stamp, data })
    return data
  }

  private stamp(rec: DatasetRecord): string {
    try {
      const st = statSync(rec.file)
      return `${rec.schemaHash}:${st.mtimeMs}:${st.size}`
    } catch (e) {
      throw new SyndicateError(
        'ERR_DATASET_FILE',
        `the file of dataset ${rec.name} cannot be read (${(e as Error).message}); register it again`,
      )
    }
  }

  async get(name: string): Promise<DatasetRecord | undefined> {
    return this.store.sub<DatasetRecord>(SUBLEVEL).get(name)
  }

  async list(): Promise<DatasetRecord[]> {
    const out: DatasetRecord[] = []
    for await (const [, v] of this.store.sub<DatasetRecord>(SUBLEVEL).iterator()) out.push(v)
    return out
  }
}

export function datasetRoutes(registry: DatasetRegistry): { app: Hono; docs: Omit<RouteDoc, 'access'>[] } {
  const app = new Hono()
  app.post('/', async (c) => c.json(await registry.register(await parseBody(c, RegisterDatasetSchema)), 201))
  app.get('/', async (c) =>
    c.json({ datasets: (await registry.list()).map(({ stats: _s, ...rest }) => rest) }),
  )
  app.get('/:name', async (c) => {
    const rec = await registry.get(c.req.param('name'))
    if (!rec) throw new SyndicateError('ERR_NOT_FOUND', `no dataset ${c.req.param('name')}`)
    return c.json(rec)
  })
  return {
    app,
    docs: [
      {
        method: 'post',
        path: '/',
        summary:
          'Register a local CSV file as a dataset (schema, hash and statistics are stored; rows stay in the file)',
        body: RegisterDatasetSchema,
      },
      { method: 'get', path: '/', summary: 'Registered datasets' },
      { method: 'get', path: '/:name', summary: 'One dataset with its schema and summary statistics' },
    ],
  }
}
