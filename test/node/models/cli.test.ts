import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Hono } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { featureMatrix } from '../../../learning/data/dataset.ts'
import { predictProba } from '../../../learning/models/predict.ts'
import { type ApiTarget, scoreCommand } from '../../../node/services/models/cli.ts'
import { modelRoutes } from '../../../node/services/models/routes.ts'
import { Scorer } from '../../../node/services/models/scorer.ts'
import { createRng, DATA_DIR, loadFate, randomLr } from '../../learning/onnx/fixtures.ts'
import { tempRegistry } from './helpers.ts'

const test = loadFate('default_credit_homo_test.csv')
const model = randomLr(test.featureNames, createRng(1))
let api: ApiTarget
let done: () => Promise<void>
const dir = mkdtempSync(join(tmpdir(), 'syndicate-cli-'))

beforeAll(async () => {
  const t = await tempRegistry()
  const scorer = new Scorer(t.registry)
  await t.registry.register({ id: 'lr', model, cutoff: 0.3 })
  await t.registry.setState('lr', 1, 'live')
  // Mounted as the node does: bearer-token auth in front of the model routes.
  const app = new Hono()
    .use('/v1/*', bearerAuth({ token: 'secret' }))
    .route('/v1/models', modelRoutes({ registry: t.registry, scorer }))
  api = {
    baseUrl: 'http://node.test/',
    token: 'secret',
    fetch: ((url: string, init?: RequestInit) => app.request(url, init)) as typeof fetch,
  }
  done = async () => {
    await scorer.close()
    await t.cleanup()
    rmSync(dir, { recursive: true, force: true })
  }
})
afterAll(() => done())

describe('syndicate score (CLI)', () => {
  it('scores a CSV file in batches, keeps the id column, drops non-feature columns', async () => {
    const file = join(dir, 'in.csv')
    const lines = readFileSync(join(DATA_DIR, 'default_credit_homo_test.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(0, 501)
    writeFileSync(file, `${lines.join('\n')}\n`)
    const out = join(dir, 'out.csv')
    expect(await scoreCommand({ model: 'lr', file, out, batchSize: 120, reasons: 2 }, api)).toBe(500)
    const rows = readFileSync(out, 'utf8').trim().split('\n')
    expect(rows[0]).toBe('id,probability,decision,reasons')
    expect(rows).toHaveLength(501)
    const ref = predictProba(model, featureMatrix(test, model.features), 500)
    rows.slice(1).forEach((line, i) => {
      const [id, p, decision, reasons] = line.split(',')
      expect(id).toBe(test.ids[i])
      expect(Math.abs(Number(p) - ref[i])).toBeLessThan(1e-5)
      expect(Number(decision)).toBe(Number(p) >= 0.3 ? 1 : 0)
      expect(reasons.split(';')).toHaveLength(2)
    })
  })

  it('scores one JSON row', async () => {
    let printed = ''
    const row = JSON.stringify(Object.fromEntries(test.featureNames.map((f, j) => [f, test.X[j]])))
    await scoreCommand({ model: 'lr', row }, api, (s) => {
      printed += s
    })
    expect(JSON.parse(printed)).toMatchObject({ model: 'lr', version: 1 })
  })

  it('reports server errors with their code and problems as file rows', async () => {
    const file = join(dir, 'bad.csv')
    const header = test.featureNames.join(',')
    const good = test.featureNames.map(() => '0').join(',')
    writeFileSync(file, `${header}\n${good}\n${good}\n${good.replace(/^0/, 'abc')}\n`)
    const e = await scoreCommand({ model: 'lr', file, batchSize: 2 }, api).catch((err: unknown) => err)
    expect(isSyndicateError(e, 'ERR_VALIDATION')).toBe(true)
    expect((e as Error).message).toContain(`row 3, ${test.featureNames[0]}: wrong type`)
    const missing = await scoreCommand({ model: 'nope', file }, api).catch((err: unknown) => err)
    expect(isSyndicateError(missing, 'ERR_MODEL_NOT_FOUND')).toBe(true)
    const denied = await scoreCommand({ model: 'lr', file }, { ...api, token: 'wrong' }).catch(
      (err: unknown) => err,
    )
    expect(isSyndicateError(denied, 'ERR_HTTP_401')).toBe(true)
  })
})
