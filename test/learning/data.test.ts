import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import { loadCsv, parseCsv } from '../../learning/data/csv.ts'
import { concatRows, featureMatrix, joinOnId, subset } from '../../learning/data/dataset.ts'
import { describeDataset } from '../../learning/data/describe.ts'
import { canonicalSchemaJson, schemaHash } from '../../learning/data/schema.ts'
import { stratifiedSplit, stratifiedSplitIndices } from '../../learning/data/split.ts'
import { columnStats } from '../../learning/data/stats.ts'

const DATA = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/data')
const tmp = mkdtempSync(join(tmpdir(), 'syndicate-learning-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

/** The SyndicateError thrown by fn (fails the test if none). */
function errorOf(fn: () => unknown): { code: string; message: string; details?: Record<string, unknown> } {
  try {
    fn()
  } catch (e) {
    if (isSyndicateError(e)) return e
    throw e
  }
  throw new Error('expected a SyndicateError')
}

describe('parseCsv', () => {
  const text = 'id,y,age,region,income\n a1,0,30,north,1000\na2,1,45,south,2000.5\na3,0,51,north,-3e2\n'

  it('reads ids, labels and a row-major matrix, inferring numeric and text-categorical columns', () => {
    const ds = parseCsv(text, { id: 'id', label: 'y' })
    expect(ds.ids).toEqual(['a1', 'a2', 'a3'])
    expect(Array.from(ds.y!)).toEqual([0, 1, 0])
    expect(ds.featureNames).toEqual(['age', 'region', 'income'])
    expect(ds.schema.columns.map((c) => c.type)).toEqual(['numeric', 'categorical', 'numeric'])
    expect(ds.categories.region).toEqual(['north', 'south'])
    expect(Array.from(ds.X)).toEqual([30, 0, 1000, 45, 1, 2000.5, 51, 0, -300])
  })

  it('applies type overrides (numeric codes as categorical)', () => {
    const ds = parseCsv(text, { id: 'id', label: 'y', columns: { age: { type: 'categorical' } } })
    expect(ds.schema.columns[0]).toEqual({ name: 'age', type: 'categorical', nullable: false })
    expect(ds.X[0]).toBe(30)
  })

  it('rejects a missing value with its line and column unless the column is nullable', () => {
    const t = 'id,y,a,b\n1,0,1,2\n2,1,,3\n'
    const e = errorOf(() => parseCsv(t, { id: 'id', label: 'y' }, 'f.csv'))
    expect(e.code).toBe('ERR_DATA_MISSING')
    expect(e.message).toContain('f.csv: line 3, column "a"')
    expect(e.message).toMatch(/nullable/)
    const ds = parseCsv(t, { id: 'id', label: 'y', columns: { a: { nullable: true } } })
    expect(Number.isNaN(ds.X[2])).toBe(true)
    expect(ds.schema.columns[0].nullable).toBe(true)
    for (const token of ['NA', 'null', '?', 'NaN']) {
      expect(errorOf(() => parseCsv(`id,a\n1,${token}\n`, { id: 'id' })).code).toBe('ERR_DATA_MISSING')
    }
  })

  it('names the editor line of a non-numeric cell, counting blank lines', () => {
    const e = errorOf(() => parseCsv('id,y,a\n1,0,2\n\n2,1,x7\n3,0,4\n', { id: 'id', label: 'y' }, 'g.csv'))
    expect(e.code).toBe('ERR_DATA_NOT_NUMERIC')
    expect(e.message).toContain('g.csv: line 4, column "a"')
    expect(e.details).toMatchObject({ line: 4, column: 'a' })
    // Hex, Infinity and the like are not silently accepted as numbers.
    expect(errorOf(() => parseCsv('id,a,b\n1,0x10,1\n2,3,4\n', { id: 'id' })).code).toBe(
      'ERR_DATA_NOT_NUMERIC',
    )
    expect(errorOf(() => parseCsv('id,a,b\n1,Infinity,1\n2,3,4\n', { id: 'id' })).code).toBe(
      'ERR_DATA_NOT_NUMERIC',
    )
  })

  it('reads CRLF files with the same line numbers', () => {
    const e = errorOf(() => parseCsv('id,a\r\n1,2\r\n2,x\r\n', { id: 'id' }))
    expect(e.details).toMatchObject({ line: 3, column: 'a' })
  })

  it('rejects duplicate ids naming both lines', () => {
    const e = errorOf(() => parseCsv('id,a\n7,1\n8,2\n7,3\n', { id: 'id' }))
    expect(e.code).toBe('ERR_DATA_DUPLICATE_ID')
    expect(e.message).toMatch(/line 4.*already appeared on line 2/)
  })

  it('rejects empty files and header-only files', () => {
    expect(errorOf(() => parseCsv('', { id: 'id' })).code).toBe('ERR_DATA_EMPTY')
    expect(errorOf(() => parseCsv('  \n\n', { id: 'id' })).code).toBe('ERR_DATA_EMPTY')
    expect(errorOf(() => parseCsv('id,a\n', { id: 'id' })).code).toBe('ERR_DATA_EMPTY')
  })

  it('detects a file separated by another delimiter', () => {
    const e = errorOf(() => parseCsv('id;y;a\n1;0;2\n', { id: 'id', label: 'y' }))
    expect(e.code).toBe('ERR_DATA_DELIMITER')
    expect(e.message).toContain('";"')
    const ok = parseCsv('id;y;a\n1;0;2,5\n', {
      id: 'id',
      label: 'y',
      delimiter: ';',
      columns: { a: { type: 'categorical' } },
    })
    expect(ok.categories.a).toEqual(['2,5'])
  })

  it('rejects ragged rows with the line', () => {
    const e = errorOf(() => parseCsv('id,a,b\n1,2,3\n2,3\n', { id: 'id' }))
    expect(e.code).toBe('ERR_DATA_RAGGED')
    expect(e.details).toMatchObject({ line: 3, fields: 2, expected: 3 })
  })

  it('checks labels, header and overrides', () => {
    expect(errorOf(() => parseCsv('id,y\n1,2\n', { id: 'id', label: 'y' })).code).toBe('ERR_DATA_LABEL')
    expect(errorOf(() => parseCsv('id,y\n1,0\n', { id: 'ID', label: 'y' })).message).toMatch(/no column "ID"/)
    expect(errorOf(() => parseCsv('id,a,a\n1,0,1\n', { id: 'id' })).message).toMatch(/appears twice/)
    expect(
      errorOf(() => parseCsv('id,a\n1,0\n', { id: 'id', columns: { b: { type: 'numeric' } } })).code,
    ).toBe('ERR_DATA_SCHEMA')
    expect(errorOf(() => parseCsv('id,a\n1,"0\n', { id: 'id' })).code).toBe('ERR_DATA_CSV')
  })

  it('keeps a mostly numeric column numeric and reports the stray text cell', () => {
    const e = errorOf(() => parseCsv('id,a\n1,5\n2,n/a5\n', { id: 'id' }))
    expect(e.code).toBe('ERR_DATA_NOT_NUMERIC')
    expect(e.message).toMatch(/declare the column categorical/)
  })
})

describe('the bundled credit files', () => {
  it('loads the raw UCI file with categorical overrides', () => {
    const ds = loadCsv(join(DATA, 'UCI_Credit_Card.csv'), {
      id: 'ID',
      label: 'default.payment.next.month',
      columns: {
        SEX: { type: 'categorical' },
        EDUCATION: { type: 'categorical' },
        MARRIAGE: { type: 'categorical' },
      },
    })
    expect(ds.ids).toHaveLength(30_000)
    expect(ds.featureNames).toHaveLength(23)
    expect(ds.featureNames[0]).toBe('LIMIT_BAL')
    const rate = ds.y!.reduce((s, v) => s + v, 0) / 30_000
    expect(rate).toBeCloseTo(0.2212, 3)
    expect(ds.X[0]).toBe(20000)
    expect(ds.schema.columns.find((c) => c.name === 'SEX')!.type).toBe('categorical')
  })

  it('describeDataset returns schema, hash, rows and statistics', () => {
    const d = describeDataset(join(DATA, 'default_credit_hetero_host.csv'), { id: 'id' })
    expect(d.rows).toBe(30_000)
    expect(d.schema.label).toBeUndefined()
    expect(d.schemaHash).toMatch(/^[0-9a-f]{64}$/)
    expect(d.stats.columns).toHaveLength(10)
    const x0 = d.stats.columns[0]
    // The FATE split files are standardised.
    expect(Math.abs(x0.mean)).toBeLessThan(0.01)
    expect(x0.std).toBeCloseTo(1, 1)
    expect(x0.missing).toBe(0)
    expect(x0.quantiles.p50).toBeGreaterThanOrEqual(x0.min)
  })
})

describe('schema hash', () => {
  const schema = { id: 'id', label: 'y', columns: [{ name: 'a', type: 'numeric' as const, nullable: false }] }

  it('is SHA-256 of the canonical JSON', () => {
    const json = canonicalSchemaJson(schema)
    expect(json).toBe('{"columns":[{"name":"a","nullable":false,"type":"numeric"}],"id":"id","label":"y"}')
    expect(schemaHash(schema)).toBe(createHash('sha256').update(json).digest('hex'))
  })

  it('changes with any schema field, not with data', () => {
    const h = schemaHash(schema)
    expect(schemaHash({ ...schema, label: undefined })).not.toBe(h)
    expect(schemaHash({ ...schema, columns: [{ ...schema.columns[0], type: 'categorical' }] })).not.toBe(h)
    const a = parseCsv('id,y,a\n1,0,5\n', { id: 'id', label: 'y' })
    const b = parseCsv('id,y,a\n9,1,7\n', { id: 'id', label: 'y' })
    expect(schemaHash(a.schema)).toBe(schemaHash(b.schema))
    expect(schemaHash(a.schema)).toBe(h)
  })
})

describe('joins, pooling and splits', () => {
  const guest = parseCsv('id,y,x0\n1,0,10\n2,1,20\n3,0,30\n', { id: 'id', label: 'y' })
  const host = parseCsv('id,x0,x1\n3,300,3000\n1,100,1000\n4,400,4000\n', { id: 'id' })

  it('joins vertically on id (inner, left order) with prefixes', () => {
    const j = joinOnId(guest, host, { prefixes: ['g_', 'h_'] })
    expect(j.ids).toEqual(['1', '3'])
    expect(Array.from(j.y!)).toEqual([0, 0])
    expect(j.featureNames).toEqual(['g_x0', 'h_x0', 'h_x1'])
    expect(Array.from(j.X)).toEqual([10, 100, 1000, 30, 300, 3000])
    expect(j.schema.label).toBe('y')
    // The label can sit on either side.
    expect(Array.from(joinOnId(host, guest, { prefixes: ['h_', 'g_'] }).y!)).toEqual([0, 0])
  })

  it('refuses ambiguous joins', () => {
    expect(errorOf(() => joinOnId(guest, host)).code).toBe('ERR_DATA_JOIN_COLUMNS')
    expect(errorOf(() => joinOnId(guest, guest, { prefixes: ['a', 'b'] })).code).toBe('ERR_DATA_JOIN_LABELS')
  })

  it('pools rows of datasets with the same columns', () => {
    const other = parseCsv('id,y,x0\n5,1,50\n', { id: 'id', label: 'y' })
    const p = concatRows([guest, other])
    expect(p.ids).toEqual(['1', '2', '3', '5'])
    expect(Array.from(p.X)).toEqual([10, 20, 30, 50])
    expect(Array.from(p.y!)).toEqual([0, 1, 0, 1])
    expect(errorOf(() => concatRows([guest, guest])).code).toBe('ERR_DATA_DUPLICATE_ID')
    expect(errorOf(() => concatRows([guest, host])).code).toBe('ERR_DATA_CONCAT_COLUMNS')
  })

  it('selects model columns by name', () => {
    const j = joinOnId(guest, host, { prefixes: ['g_', 'h_'] })
    expect(Array.from(featureMatrix(j, ['h_x1', 'g_x0']))).toEqual([1000, 10, 3000, 30])
    expect(errorOf(() => featureMatrix(j, ['nope'])).code).toBe('ERR_DATA_MISSING_FEATURES')
    expect(subset(j, [1]).ids).toEqual(['3'])
  })

  it('splits 80/20 stratified, disjoint, reproducibly', () => {
    const y = new Uint8Array(1000)
    for (let i = 0; i < 1000; i++) y[i] = i % 5 === 0 ? 1 : 0
    const a = stratifiedSplitIndices(y, 0.2, 42)
    expect(a.test.length).toBe(200)
    expect(a.train.length).toBe(800)
    expect(Array.from(a.test).filter((i) => y[i] === 1)).toHaveLength(40)
    expect(new Set([...a.train, ...a.test]).size).toBe(1000)
    expect(stratifiedSplitIndices(y, 0.2, 42)).toEqual(a)
    expect(Array.from(stratifiedSplitIndices(y, 0.2, 43).test)).not.toEqual(Array.from(a.test))
  })

  it('splits datasets and keeps rows intact', () => {
    const ds = parseCsv(
      `id,y,a\n${Array.from({ length: 50 }, (_, i) => `${i},${i % 2},${i * 10}`).join('\n')}\n`,
      {
        id: 'id',
        label: 'y',
      },
    )
    const { train, test } = stratifiedSplit(ds, 1)
    expect(test.ids).toHaveLength(10)
    for (const part of [train, test]) {
      part.ids.forEach((id, k) => {
        expect(part.X[k]).toBe(Number(id) * 10)
        expect(part.y![k]).toBe(Number(id) % 2)
      })
    }
  })
})

describe('column statistics', () => {
  it('computes count, missing, moments, extremes and quantiles', () => {
    const s = columnStats('a', 'numeric', Float64Array.from([4, Number.NaN, 1, 3, 2]))
    expect(s).toMatchObject({ count: 4, missing: 1, mean: 2.5, min: 1, max: 4, distinct: 4 })
    expect(s.std).toBeCloseTo(Math.sqrt(1.25), 12)
    expect(s.quantiles.p50).toBe(2.5)
    expect(s.quantiles.p25).toBeCloseTo(1.75, 12)
  })

  it('loads a file written to disk', () => {
    const f = join(tmp, 'x.csv')
    writeFileSync(f, '\ufeffid,y,a\n1,0,1\n2,1,2\n')
    const d = describeDataset(f, { id: 'id', label: 'y' })
    expect(d.rows).toBe(2)
    expect(d.stats.positiveRate).toBe(0.5)
    expect(errorOf(() => loadCsv(join(tmp, 'nope.csv'), { id: 'id' })).code).toBe('ERR_DATA_READ')
  })
})
