import { describe, expect, it } from 'vitest'
import { concatRows } from '../../../../learning/data/dataset.ts'
import { gridCell } from '../../../../learning/joint/trees/federated.ts'
import { edgesFromGrid, federatedGbdt } from '../../../../learning/joint/trees/index.ts'
import type { LocalData } from '../../../../learning/joint/types.ts'
import { auc } from '../../../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../../../learning/models/gbdt.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import { quantileEdges } from '../../../../learning/preprocess/binning.ts'
import { createRng } from '../../../../learning/random.ts'
import { fulfilled, HOMO_PARTIES, loadHomo, localData, runParties } from '../horizontal/run.ts'
import { contains, recorded } from './run.ts'

const PARAMS = { trees: 30, maxDepth: 3, learningRate: 0.3, maxBins: 32 }

function gridCounts(values: number[]): Float64Array {
  const c = new Float64Array(1025)
  for (const v of values) c[gridCell(v)]++
  return c
}

/** Bin index of v under ascending edges (x <= edge goes left). */
const binOf = (edges: number[], v: number) => edges.filter((e) => e < v).length

describe('federated GBDT (horizontal, secure aggregation)', () => {
  it('edges from pooled grid counts give the pooled quantile bins of discrete data exactly', () => {
    const values = Array.from(
      { length: 3000 },
      (_, i) => [-1.2, -0.3, 0.4, 0.9, 2.5, 7][i % 6] * (i % 7 === 0 ? 1 : 1),
    )
    const exact = quantileEdges(values, 4)
    const grid = edgesFromGrid(gridCounts(values), 4)
    expect(grid).toHaveLength(exact.length)
    for (const v of new Set(values)) expect(binOf(grid, v)).toBe(binOf(exact, v))
  })

  it('edges from grid counts track the pooled quantiles of continuous data', () => {
    const rng = createRng(1)
    const values = Array.from({ length: 5000 }, () => Math.sinh(3 * (2 * rng.next() - 1)))
    const exact = quantileEdges(values, 32)
    const grid = edgesFromGrid(gridCounts(values), 32)
    expect(grid.length).toBeGreaterThanOrEqual(exact.length - 1)
    // Share of rows whose bin differs stays small (a grid cell is ~1.6% of asinh range).
    const moved = values.filter((v) => binOf(grid, v) !== binOf(exact, v)).length
    expect(moved / values.length).toBeLessThan(0.05)
  })

  it('matches the pooled plaintext GBDT on the homo files and every party ends with the same trees', async () => {
    const parts = HOMO_PARTIES.map(loadHomo)
    const test = localData(loadHomo('test'))
    const data = new Map<string, LocalData>(HOMO_PARTIES.map((n, i) => [n, localData(parts[i])]))
    const { channels, sent } = recorded(HOMO_PARTIES)
    const models = fulfilled(await runParties(federatedGbdt, data, { params: PARAMS, channels }))
    const json = [...models.values()].map((m) => JSON.stringify(m))
    expect(new Set(json).size).toBe(1)
    const a = auc(test.y!, federatedGbdt.predict(models.get('guest')!, test))
    const pooled = localData(concatRows(parts))
    const base = trainGbdt(pooled.X, pooled.y!, pooled.features, PARAMS)
    const b = auc(test.y!, predictProba(base, test.X, test.rows))
    expect(a).toBeGreaterThanOrEqual(0.78)
    expect(Math.abs(a - b)).toBeLessThanOrEqual(0.005)
    // No party's raw values (float64 bytes or decimal text) in anything it sent.
    for (const [party, local] of data) {
      const traffic = Buffer.concat(sent.get(party)!)
      const text = traffic.toString('latin1')
      for (const v of [...new Set(local.X)].filter((x) => String(x).length >= 6).slice(0, 40)) {
        expect(contains(traffic, new Uint8Array(Float64Array.of(v).buffer))).toBe(false)
        expect(text.includes(String(v))).toBe(false)
      }
    }
  }, 60_000)

  it('refuses a two-party job, unknown parameters and disagreeing columns', async () => {
    const small = HOMO_PARTIES.map((n) => {
      const d = localData(loadHomo(n))
      const rows = 200
      return { ...d, rows, X: d.X.slice(0, rows * d.features.length), y: d.y!.slice(0, rows) }
    })
    const two = await runParties(
      federatedGbdt,
      new Map([
        ['a', small[0]],
        ['b', small[1]],
      ]),
      { params: { trees: 1 } },
    )
    expect(two.get('a')).toMatchObject({ status: 'rejected', reason: { code: 'ERR_FGBDT_DATA' } })
    const three = (params: Record<string, unknown>, last: LocalData) =>
      runParties(
        federatedGbdt,
        new Map([
          ['a', small[0]],
          ['b', small[1]],
          ['c', last],
        ]),
        { params },
      )
    const bad = await three({ trees: 1, depth: 2 }, small[2])
    expect(bad.get('b')).toMatchObject({ status: 'rejected', reason: { code: 'ERR_JOINT_PARAMS' } })
    const renamed = { ...small[2], features: small[2].features.map((f, j) => (j === 0 ? 'other' : f)) }
    const mismatch = await three({ trees: 1 }, renamed)
    expect(mismatch.get('a')).toMatchObject({ status: 'rejected', reason: { code: 'ERR_FGBDT_DATA' } })
    expect(mismatch.get('c')).toMatchObject({ status: 'rejected', reason: { code: 'ERR_FGBDT_DATA' } })
  }, 30_000)
})
