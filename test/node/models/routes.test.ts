import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { featureMatrix } from '../../../learning/data/dataset.ts'
import { createExplainer } from '../../../learning/explain/reasons.ts'
import { predictProba } from '../../../learning/models/predict.ts'
import { exportOnnx } from '../../../learning/onnx/export.ts'
import type { ModelRegistry } from '../../../node/services/models/registry.ts'
import { modelRoutes } from '../../../node/services/models/routes.ts'
import { Scorer } from '../../../node/services/models/scorer.ts'
import { createRng, loadFate, randomGbdt, randomLr } from '../../learning/onnx/fixtures.ts'
import { tempRegistry } from './helpers.ts'

const test = loadFate('default_credit_homo_test.csv')
const features = test.featureNames
const n = test.ids.length
const X = featureMatrix(test, features)
const lr = randomLr(features, createRng(1))
const gbdt = randomGbdt(test, createRng(2), 30, 4)
/** No imputation: null / empty cells are invalid for this one. */
const plain = randomLr(features, createRng(3), false)

let registry: ModelRegistry
let scorer: Scorer
let app: Hono
let cleanup: () => Promise<void>

beforeAll(async () => {
  const t = await tempRegistry()
  registry = t.registry
  cleanup = t.cleanup
  scorer = new Scorer(registry)
  // Mounted as the node does (auth is the node's), so the sub-app's error handler is exercised through it.
  app = new Hono().route('/v1/models', modelRoutes({ registry, scorer, maxBatchRows: 6000 }))
  await registry.register({ id: 'lr', model: lr, cutoff: 0.4 })
  await registry.setState('lr', 1, 'live')
  await registry.register({ id: 'gbdt', model: gbdt })
  await registry.setState('gbdt', 1, 'live')
  await registry.register({ id: 'plain', model: plain })
  await registry.setState('plain', 1, 'live')
})

afterAll(async () => {
  await scorer.close()
  await cleanup()
})

const post = (path: string, body: unknown, type = 'application/json') =>
  app.request(`/v1/models${path}`, {
    method: 'POST',
    headers: { 'content-type': type },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

const rowObject = (i: number): Record<string, number> =>
  Object.fromEntries(features.map((f, j) => [f, X[i * features.length + j]]))

/** The documented LR reference: the standardisation mean, so contribution_j = w_j·z_j. */
const lrExplain = createExplainer(lr, { X: Float64Array.from(lr.preprocessing.standardize!.mean), rows: 1 })

describe('scoring routes', () => {
  it('scores one row: probability, decision at the model cutoff, LR reason codes', async () => {
    const ref = predictProba(lr, X, n)
    for (const i of [0, 1, 2, 17]) {
      const res = await post('/lr/score', { row: rowObject(i) })
      expect(res.status).toBe(200)
      const body = (await res.json()) as {
        model: string
        version: number
        probability: number
        decision: number
        reasons: { feature: string; contribution: number }[]
      }
      expect(body.model).toBe('lr')
      expect(body.version).toBe(1)
      expect(Math.abs(body.probability - ref[i])).toBeLessThan(1e-5)
      expect(body.decision).toBe(body.probability >= 0.4 ? 1 : 0)
      const x = X.subarray(i * features.length, (i + 1) * features.length)
      const want = lrExplain(Float32Array.from(x), { top: 4 }).reasons
      expect(body.reasons).toHaveLength(4)
      expect(body.reasons.map((r) => r.feature)).toEqual(want.map((r) => r.feature))
      // LR from the training mean: each contribution is w_j·(x_j − mean_j)/scale_j.
      for (const r of body.reasons) {
        const j = features.indexOf(r.feature)
        const { mean, scale } = lr.preprocessing.standardize!
        expect(r.contribution).toBeCloseTo((lr.weights[j] * (x[j] - mean[j])) / scale[j], 5)
      }
    }
  })

  it('scores the whole 6,000-row test set as a JSON batch and as a CSV upload, equal to the in-process GBDT', async () => {
    const ref = predictProba(gbdt, X, n)
    const rows = Array.from({ length: n }, (_, i) => rowObject(i))
    const csv = [features.join(','), ...rows.map((r) => features.map((f) => r[f]).join(','))].join('\n')
    for (const res of [await post('/gbdt/score', { rows }), await post('/gbdt/score', csv, 'text/csv')]) {
      expect(res.status).toBe(200)
      const body = (await res.json()) as {
        results: { probability: number; decision: number; reasons: unknown[] }[]
      }
      expect(body.results).toHaveLength(n)
      let worst = 0
      body.results.forEach((r, i) => {
        worst = Math.max(worst, Math.abs(r.probability - ref[i]))
        expect(r.decision).toBe(r.probability >= 0.5 ? 1 : 0)
      })
      expect(worst).toBeLessThan(1e-5)
    }
  })

  it('GBDT reason codes (TreeSHAP): 4 for one row by default, none for batches unless ?reasons=N', async () => {
    const explain = createExplainer(gbdt)
    const one = (await (await post('/gbdt/score', { row: rowObject(5) })).json()) as { reasons: unknown[] }
    const x = Float32Array.from(X.subarray(5 * features.length, 6 * features.length))
    expect(one.reasons).toEqual(JSON.parse(JSON.stringify(explain(x, { top: 4 }).reasons)))
    const rows = [0, 1, 2].map(rowObject)
    const plain = (await (await post('/gbdt/score', { rows })).json()) as {
      results: { reasons: unknown[] }[]
    }
    expect(plain.results.map((r) => r.reasons)).toEqual([[], [], []])
    const two = (await (await post('/gbdt/score?reasons=2', { rows })).json()) as {
      results: { reasons: unknown[] }[]
    }
    expect(two.results.map((r) => r.reasons.length)).toEqual([2, 2, 2])
    const none = (await (await post('/gbdt/score?reasons=0', { row: rowObject(5) })).json()) as {
      reasons: unknown[]
    }
    expect(none.reasons).toEqual([])
    expect((await post('/gbdt/score?reasons=lots', { row: rowObject(5) })).status).toBe(400)
  })

  it('reads quoted CSV (csv-parse path) and CRLF lines like plain CSV; empty cells are missing for a GBDT', async () => {
    const rows = [0, 1, 2].map(rowObject)
    const quoted = [
      features.map((f) => `"${f}"`).join(','),
      ...rows.map((r) => features.map((f) => `"${r[f]}"`).join(',')),
    ].join('\r\n')
    const plainCsv = [features.join(','), ...rows.map((r) => features.map((f) => r[f]).join(','))].join(
      '\r\n',
    )
    const a = (await (await post('/gbdt/score', quoted, 'text/csv')).json()) as { results: unknown[] }
    const b = (await (await post('/gbdt/score', plainCsv, 'text/csv; charset=utf-8')).json()) as {
      results: unknown[]
    }
    expect(a.results).toHaveLength(3)
    expect(a).toEqual(b)
    const holes = [features.join(','), features.map((f, j) => (j === 2 ? '' : rows[0][f])).join(',')].join(
      '\n',
    )
    const x = Float64Array.from(features.map((f, j) => (j === 2 ? Number.NaN : rows[0][f])))
    const c = (await (await post('/gbdt/score', holes, 'text/csv')).json()) as {
      results: { probability: number }[]
    }
    expect(Math.abs(c.results[0].probability - predictProba(gbdt, x, 1)[0])).toBeLessThan(1e-5)
  })

  it('a GBDT accepts null (missing) and routes it like the in-process model', async () => {
    const row: Record<string, number | null> = rowObject(3)
    row[features[0]] = null
    row[features[5]] = null
    const x = Float64Array.from(features.map((f) => row[f] ?? Number.NaN))
    const body = (await (await post('/gbdt/score', { row })).json()) as { probability: number }
    expect(Math.abs(body.probability - predictProba(gbdt, x, 1)[0])).toBeLessThan(1e-5)
  })

  it('answers 400 with every problem listed, per row and field', async () => {
    const good = rowObject(0)
    const { [features[1]]: _dropped, ...missing } = good
    const rows = [
      good,
      { ...missing, extra: 1 },
      { ...good, [features[2]]: '7' },
      { ...good, [features[3]]: null },
      { ...good, [features[4]]: 1e300 },
    ]
    const res = await post('/plain/score', { rows })
    expect(res.status).toBe(400)
    const body = (await res.json()) as {
      error: { code: string; message: string; problems: { row: number; field: string; problem: string }[] }
    }
    expect(body.error.code).toBe('ERR_VALIDATION')
    expect(body.error.problems.map((p) => [p.row, p.field])).toEqual([
      [1, features[1]],
      [1, 'extra'],
      [2, features[2]],
      [3, features[3]],
      [4, features[4]],
    ])
    expect(body.error.problems[0].problem).toMatch(/missing/)
    expect(body.error.problems[1].problem).toMatch(/unknown/)
    expect(body.error.problems[2].problem).toMatch(/wrong type/)
  })

  it('CSV problems: non-numeric, NaN, empty cell for a model without imputation, unknown column', async () => {
    const header = [...features, 'id'].join(',')
    const line = (edit: (cells: string[]) => void) => {
      const cells = [...features.map((f) => String(rowObject(0)[f])), '5']
      edit(cells)
      return cells.join(',')
    }
    const csv = [
      header,
      line((c) => {
        c[0] = 'abc'
      }),
      line((c) => {
        c[1] = 'NaN'
      }),
      line((c) => {
        c[2] = ''
      }),
    ].join('\n')
    const body = (await (await post('/plain/score', csv, 'text/csv')).json()) as {
      error: { problems: { row: number; field: string; problem: string }[] }
    }
    const got = body.error.problems.map((p) => `${p.row}:${p.field}:${p.problem.split(' ')[0]}`)
    expect(got).toEqual(
      expect.arrayContaining([
        `0:${features[0]}:wrong`,
        `1:${features[1]}:not`,
        `2:${features[2]}:wrong`,
        '0:id:unknown',
        '1:id:unknown',
        '2:id:unknown',
      ]),
    )
    expect(got).toHaveLength(6)
  })

  it('rejects oversized batches, malformed bodies and bad CSV', async () => {
    const big = await post('/plain/score', { rows: Array.from({ length: 6001 }, () => rowObject(0)) })
    expect(big.status).toBe(400)
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('ERR_BATCH_TOO_LARGE')
    const bad = await post('/plain/score', '{"row": {', 'application/json')
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('ERR_BAD_JSON')
    const shape = await post('/plain/score', { row: rowObject(0), rows: [] })
    expect(shape.status).toBe(400)
    const ragged = await post('/plain/score', 'a,b\n1,2,3\n', 'text/csv')
    expect(((await ragged.json()) as { error: { code: string } }).error.code).toBe('ERR_CSV')
  })

  it('404 for an unknown model, 409 for a model with no live version', async () => {
    expect((await post('/nope/score', { row: {} })).status).toBe(404)
    await registry.register({ id: 'staged-only', model: lr })
    const res = await post('/staged-only/score', { row: rowObject(0) })
    expect(res.status).toBe(409)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_MODEL_NOT_LIVE')
  })
})

describe('registry routes', () => {
  it('imports an ONNX model with its schema, stages it, makes it live and scores with it; switches versions', async () => {
    const other = randomLr(features, createRng(9))
    const imp = await post('', {
      id: 'imported',
      onnx: Buffer.from(exportOnnx(other)).toString('base64'),
      features,
      cutoff: 0.2,
      lineage: { trainingJobId: 'job-7', datasetSchemaHashes: ['h1'], metrics: { auc: 0.7 } },
    })
    expect(imp.status).toBe(201)
    expect(await imp.json()).toMatchObject({
      id: 'imported',
      version: 1,
      state: 'staged',
      kind: 'imported',
      cutoff: 0.2,
    })
    expect((await post('/imported/state', { version: 1, state: 'live' })).status).toBe(200)
    const s1 = (await (await post('/imported/score', { row: rowObject(0) })).json()) as {
      probability: number
      reasons: unknown[]
      version: number
    }
    expect(Math.abs(s1.probability - predictProba(other, X.subarray(0, features.length), 1)[0])).toBeLessThan(
      1e-5,
    )
    expect(s1.reasons).toEqual([])

    // A second version goes live: scoring switches to it and v1 is retired.
    await post('', { id: 'imported', onnx: Buffer.from(exportOnnx(lr)).toString('base64'), features })
    await post('/imported/state', { version: 2, state: 'live' })
    const s2 = (await (await post('/imported/score', { row: rowObject(0) })).json()) as {
      probability: number
      version: number
    }
    expect(s2.version).toBe(2)
    expect(Math.abs(s2.probability - predictProba(lr, X.subarray(0, features.length), 1)[0])).toBeLessThan(
      1e-5,
    )

    const got = (await (await app.request('/v1/models/imported')).json()) as {
      liveVersion: number
      versions: { state: string; lineage: unknown }[]
    }
    expect(got.liveVersion).toBe(2)
    expect(got.versions.map((v) => v.state)).toEqual(['retired', 'live'])
    expect(got.versions[0].lineage).toEqual({
      trainingJobId: 'job-7',
      datasetSchemaHashes: ['h1'],
      metrics: { auc: 0.7 },
    })
    const list = (await (await app.request('/v1/models')).json()) as { models: { id: string }[] }
    expect(list.models.map((m) => m.id)).toEqual(
      expect.arrayContaining(['gbdt', 'imported', 'lr', 'plain', 'staged-only']),
    )
  })

  it('keeps answering while live versions switch under concurrent load; each answer matches its version', async () => {
    await registry.register({ id: 'swap', model: lr })
    await registry.register({ id: 'swap', model: plain })
    await registry.setState('swap', 1, 'live')
    const x = X.subarray(0, features.length)
    const want = { 1: predictProba(lr, x, 1)[0], 2: predictProba(plain, x, 1)[0] }
    const pending: (Response | Promise<Response>)[] = []
    for (let wave = 0; wave < 4; wave++) {
      for (let k = 0; k < 40; k++) pending.push(post('/swap/score?reasons=0', { row: rowObject(0) }))
      const to = wave % 2 === 0 ? 2 : 1
      const from = to === 1 ? 2 : 1
      await registry.setState('swap', to, 'live')
      await registry.setState('swap', from, 'staged')
    }
    const answers = await Promise.all(
      pending.map(async (p) => (await p).json() as Promise<{ version: 1 | 2; probability: number }>),
    )
    expect(answers).toHaveLength(160)
    for (const a of answers) expect(Math.abs(a.probability - want[a.version])).toBeLessThan(1e-5)
    expect(new Set(answers.map((a) => a.version)).size).toBe(2)
  })

  it('rejects a schema that does not match the graph, bad bodies and illegal transitions', async () => {
    const onnx = Buffer.from(exportOnnx(lr)).toString('base64')
    const mismatch = await post('', { id: 'x', onnx, features: features.slice(1) })
    expect(mismatch.status).toBe(400)
    expect(((await mismatch.json()) as { error: { code: string } }).error.code).toBe(
      'ERR_MODEL_SCHEMA_MISMATCH',
    )
    const badBody = await post('', { id: 'bad id!', onnx: '***', features: [], extra: 1 })
    const problems = (
      (await badBody.json()) as { error: { problems: { field: string }[] } }
    ).error.problems.map((p) => p.field)
    expect(problems).toEqual(expect.arrayContaining(['id', 'onnx', 'features', null]))
    const illegal = await post('/lr/state', { version: 1, state: 'staged' })
    expect(illegal.status).toBe(409)
    expect(((await illegal.json()) as { error: { code: string } }).error.code).toBe(
      'ERR_MODEL_STATE_TRANSITION',
    )
  })
})
