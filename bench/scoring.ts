/**
 * `npm run bench -- scoring [--requests 10000] [--batch 10000]`: real-time scoring through the node's HTTP
 * route on a real server on 127.0.0.1, beside onnxruntime called in-process in the same run (the baseline).
 * - single-row latency p50/p99 over sequential requests (node fetch, keep-alive), target p99 <= 2 ms, beside
 *   the floor of a trivial route on the same server, and again with the default reason codes;
 * - batch rows/s for a JSON batch and a CSV upload, target >= 200,000 rows/s for the GBDT;
 * - the cost of zod validation of a batch against the hand-written fast path that valid requests take.
 * Models: LR and a 100-tree depth-5 GBDT trained by learning/models on default_credit_homo_guest.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Level } from 'level'
import * as ort from 'onnxruntime-node'
import { loadCsv } from '../learning/data/csv.ts'
import { featureMatrix } from '../learning/data/dataset.ts'
import { trainModel } from '../learning/models/train.ts'
import type { Model } from '../learning/models/types.ts'
import { exportOnnx } from '../learning/onnx/export.ts'
import { ModelRegistry } from '../node/services/models/registry.ts'
import { modelRoutes } from '../node/services/models/routes.ts'
import { Scorer } from '../node/services/models/scorer.ts'
import { createSession } from '../node/services/models/signature.ts'
import { rowValidator } from '../node/services/models/validate.ts'
import type { Sublevel } from '../node/store.ts'
import { bundledDataDir } from '../sim/data.ts'
import { emit, percentile, ratio, timeBest } from './report.ts'

const DATA = bundledDataDir()

function flag(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : dflt
}

function latencies(ms: number[]) {
  const s = Float64Array.from(ms).sort()
  return { p50: percentile(s, 50), p99: percentile(s, 99), total: ms.reduce((a, b) => a + b, 0) / 1000 }
}

export default async function (argv: string[]): Promise<void> {
  const requests = flag(argv, 'requests', 10_000)
  const batch = flag(argv, 'batch', 10_000)
  // TreeSHAP reason codes take milliseconds per row: fewer requests for that case.
  const reasonRequests = flag(argv, 'reason-requests', 1000)
  const train = loadCsv(`${DATA}/default_credit_homo_guest.csv`, { id: 'id', label: 'y' })
  const test = loadCsv(`${DATA}/default_credit_homo_test.csv`, { id: 'id', label: 'y' })
  const models: Record<string, Model> = {
    lr: trainModel('lr', train),
    gbdt: trainModel('gbdt', train, { trees: 100, maxDepth: 5 }),
  }

  const dir = mkdtempSync(join(tmpdir(), 'syndicate-bench-scoring-'))
  const db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
  const registry = new ModelRegistry(
    db.sublevel<string, unknown>('models', { valueEncoding: 'json' }) as Sublevel,
  )
  const scorer = new Scorer(registry)
  const app = new Hono().route(
    '/v1/models',
    modelRoutes({ registry, scorer, maxBatchRows: Math.max(batch, 10_000) }),
  )
  // The floor under any route on this machine and moment: parse the same JSON body, answer a small JSON.
  app.post('/floor', async (c) =>
    c.json({ probability: 0.5, decision: 0, seen: (await c.req.json()) !== null }),
  )
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const base = `${origin}/v1/models`
  const post = async (url: string, body: string): Promise<number> => {
    const t0 = performance.now()
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${url}`)
    return performance.now() - t0
  }
  /**
   * Sequential requests to each url in turn (after 500 warm-up rounds): interleaving puts the route and the
   * floor under the same machine noise, so their p99s compare.
   */
  const sequential = async (urls: string[], bodies: string[], count = requests) => {
    const ms: number[][] = urls.map(() => [])
    for (let r = 0; r < count + 500; r++) {
      for (let u = 0; u < urls.length; u++) {
        const t = await post(urls[u], bodies[r % bodies.length])
        if (r >= 500) ms[u].push(t)
      }
    }
    return ms.map(latencies)
  }

  try {
    for (const [id, model] of Object.entries(models)) {
      await registry.register({ id, model })
      await registry.setState(id, 1, 'live')
      const d = model.features.length
      const X = featureMatrix(test, model.features)
      const n = test.ids.length
      const rowObj = (i: number) => Object.fromEntries(model.features.map((f, j) => [f, X[(i % n) * d + j]]))
      const bodies = Array.from({ length: Math.min(n, requests) }, (_, i) =>
        JSON.stringify({ row: rowObj(i) }),
      )

      // In-process baseline: the same ONNX bytes, one session, one row per run.
      const session = await createSession(exportOnnx(model))
      const one = new Float32Array(d)
      const inproc: number[] = []
      for (let r = 0; r < requests + 500; r++) {
        for (let j = 0; j < d; j++) one[j] = X[(r % n) * d + j]
        const t0 = performance.now()
        await session.run({ input: new ort.Tensor('float32', one, [1, d]) })
        if (r >= 500) inproc.push(performance.now() - t0)
      }
      // Scoring alone (?reasons=0), then with the default 4 reason codes (LR exact, GBDT TreeSHAP).
      const [h, floor] = await sequential([`${base}/${id}/score?reasons=0`, `${origin}/floor`], bodies)
      const b = latencies(inproc)
      const [withReasons] = await sequential([`${base}/${id}/score`], bodies, reasonRequests)
      emit({
        bench: 'scoring',
        case: `${id}_single_row_http`,
        requests,
        p50_ms: h.p50,
        p99_ms: h.p99,
        seconds: h.total,
        baseline_p50_ms: b.p50,
        baseline_p99_ms: b.p99,
        baseline_s: b.total,
        ratio: ratio(h.total, b.total),
        http_floor_p50_ms: floor.p50,
        http_floor_p99_ms: floor.p99,
        target: 'p99_ms <= 2',
        met: h.p99 <= 2,
      })
      emit({
        bench: 'scoring',
        case: `${id}_single_row_http_with_4_reason_codes`,
        requests: reasonRequests,
        p50_ms: withReasons.p50,
        p99_ms: withReasons.p99,
        seconds: withReasons.total,
        baseline_s: (h.total * reasonRequests) / requests,
        ratio: ratio(withReasons.total / reasonRequests, h.total / requests),
      })

      // Batches: JSON rows and a CSV upload of `batch` rows, against one in-process run of the same rows.
      const rows = Array.from({ length: batch }, (_, i) => rowObj(i))
      const json = JSON.stringify({ rows })
      const csv = [
        model.features.join(','),
        ...rows.map((r) => model.features.map((f) => r[f]).join(',')),
      ].join('\n')
      const input = new Float32Array(batch * d)
      for (let i = 0; i < batch; i++) for (let j = 0; j < d; j++) input[i * d + j] = X[(i % n) * d + j]
      const baseline = await timeBest(
        () => session.run({ input: new ort.Tensor('float32', input, [batch, d]) }),
        5,
      )
      for (const [kind, body, type] of [
        ['json', json, 'application/json'],
        ['csv', csv, 'text/csv'],
      ] as const) {
        const s = await timeBest(async () => {
          const res = await fetch(`${base}/${id}/score`, {
            method: 'POST',
            headers: { 'content-type': type },
            body,
          })
          await res.arrayBuffer()
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`)
        }, 5)
        emit({
          bench: 'scoring',
          case: `${id}_batch_${kind}_http`,
          rows: batch,
          seconds: s,
          rows_per_s: batch / s,
          baseline_s: baseline,
          baseline_rows_per_s: batch / baseline,
          ratio: ratio(s, baseline),
          target: id === 'gbdt' ? 'rows_per_s >= 200000' : undefined,
          met: id === 'gbdt' ? batch / s >= 200_000 : undefined,
        })
      }
      await session.release()

      // Validation: zod over the batch (what an invalid request pays) vs the fast path (every valid request).
      const v = rowValidator(model.features, false)
      const parsed = JSON.parse(json).rows as unknown[]
      const zodS = await timeBest(() => v.problems(parsed), 5)
      const fastS = await timeBest(() => v.fill(parsed, new Float32Array(batch * d)), 5)
      emit({
        bench: 'scoring',
        case: `${id}_validate_batch_zod_vs_fast_path`,
        rows: batch,
        seconds: zodS,
        baseline_s: fastS,
        ratio: ratio(zodS, fastS),
      })
    }
  } finally {
    await scorer.close()
    await new Promise((resolve) => server.close(resolve))
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
