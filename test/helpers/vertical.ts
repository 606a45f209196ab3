import { readFileSync } from 'node:fs'
import { expect } from 'vitest'
import { loadCsv } from '../../learning/data/csv.ts'
import { type Dataset, joinOnId, subset } from '../../learning/data/dataset.ts'
import { sigmoid } from '../../learning/models/math.ts'
import type { JobDraft } from '../../protocol/jobs.ts'
import { type SimConsortium, startConsortium } from '../../sim/consortium.ts'
import { call, openPolicies, runJob } from '../../sim/scenario.ts'
import { dataFile } from './data.ts'
import { findLeaks } from './leaks.ts'

/**
 * Two real nodes on loopback holding the vertical split: bank-a the label and 13 features, lender-b 10 other
 * features of the same customers. Every message either node sends is captured per job session and sender.
 */
export const guest = loadCsv(dataFile('default_credit_hetero_guest.csv'), { id: 'id', label: 'y' })
export const host = loadCsv(dataFile('default_credit_hetero_host.csv'), { id: 'id' })
export const joined = joinOnId(guest, host, { prefixes: ['g_', 'h_'] })

export interface VerticalPair {
  sim: SimConsortium
  traffic: Map<string, Map<string, Uint8Array[]>>
  train(algorithm: string, mode: 'mpc' | 'he', params?: Record<string, unknown>): ReturnType<typeof runJob>
  splitOf(id: string): Promise<{ train: Dataset; test: Dataset }>
  expectNoLeaks(jobId: string): void
}

export async function startVerticalPair(): Promise<VerticalPair> {
  const sim = await startConsortium({ names: ['bank-a', 'lender-b'] })
  await openPolicies(sim)
  const [a, b] = sim.nodes
  await call(a.node, a.token, 'POST', '/v1/datasets', {
    name: 'guest',
    file: dataFile('default_credit_hetero_guest.csv'),
    id: 'id',
    label: 'y',
  })
  await call(b.node, b.token, 'POST', '/v1/datasets', {
    name: 'host',
    file: dataFile('default_credit_hetero_host.csv'),
    id: 'id',
  })
  const traffic = new Map<string, Map<string, Uint8Array[]>>()
  for (const n of sim.nodes) {
    n.node.sessions.tap((m) => {
      const bySender = traffic.get(m.session) ?? new Map<string, Uint8Array[]>()
      traffic.set(m.session, bySender)
      const list = bySender.get(m.from) ?? []
      bySender.set(m.from, list)
      list.push(m.payload)
    })
  }
  return {
    sim,
    traffic,
    async train(algorithm, mode, params = {}) {
      const draft: JobDraft = {
        kind: 'train',
        mode,
        algorithm,
        parties: [
          { name: 'bank-a', roles: ['label-holder'], dataset: 'guest' },
          { name: 'lender-b', roles: ['feature-holder'], dataset: 'host' },
        ],
        params: { seed: 42, algorithm: params as Record<string, string | number | boolean> },
        outputs: [{ what: 'metrics', to: ['bank-a', 'lender-b'] }],
        timeoutSeconds: 3600,
      }
      const r = await runJob(sim, 'bank-a', draft)
      expect(r.state, r.reason).toBe('succeeded')
      return r
    },
    async splitOf(id) {
      const s = await sim.nodes[0].node.store.sub<{ ids: string[]; test: number[] }>('alignments').get(id)
      if (!s) throw new Error(`no split stored for ${id}`)
      const index = new Map(joined.ids.map((x, i) => [x, i]))
      const test = new Set(s.test)
      const rows = (keep: boolean) => s.ids.filter((_, i) => test.has(i) === keep).map((x) => index.get(x)!)
      return { train: subset(joined, rows(false)), test: subset(joined, rows(true)) }
    },
    expectNoLeaks(jobId) {
      const own = {
        'bank-a': {
          X: guest.X,
          rows: guest.ids.length,
          cols: guest.featureNames.length,
          y: guest.y,
          text: textValues('default_credit_hetero_guest.csv'),
        },
        'lender-b': {
          X: host.X,
          rows: host.ids.length,
          cols: host.featureNames.length,
          text: textValues('default_credit_hetero_host.csv'),
        },
      }
      // The scanner finds a value that is there: one raw row of bank-a placed in a message.
      const planted = new Uint8Array(64)
      planted.set(new Uint8Array(guest.X.slice(13 * 5, 13 * 5 + 5).buffer), 3)
      expect(findLeaks([planted], own['bank-a']).float64).toBeGreaterThan(0)
      const sessions = traffic.get(`job:${jobId}`)
      expect(sessions, `traffic of ${jobId} was captured`).toBeDefined()
      for (const [party, data] of Object.entries(own)) {
        const sent = sessions!.get(party) ?? []
        expect(sent.reduce((s, b) => s + b.byteLength, 0)).toBeGreaterThan(10_000)
        const leaks = findLeaks(sent, data)
        expect(leaks, `${party}: ${leaks.examples.join('; ')}`).toMatchObject({
          float64: 0,
          float32Pairs: 0,
          text: 0,
          labels: 0,
        })
      }
    },
  }
}

/** Plaintext LR scores with the joint LR's clipping at ±6 (weights: features then bias). */
export function lrScores(w: Float64Array, d: Dataset): Float64Array {
  const k = d.featureNames.length
  const out = new Float64Array(d.ids.length)
  for (let i = 0; i < d.ids.length; i++) {
    let z = w[k]
    for (let j = 0; j < k; j++) z += w[j] * Math.max(-6, Math.min(6, d.X[i * k + j]))
    out[i] = sigmoid(z)
  }
  return out
}

/** The decimal text of every cell of the file's feature columns, as the file writes it. */
function textValues(file: string): Set<string> {
  const out = new Set<string>()
  const lines = readFileSync(dataFile(file), 'utf8').trim().split('\n')
  const header = lines[0].split(',')
  const skip = new Set(['id', 'y'].map((c) => header.indexOf(c)))
  for (const line of lines.slice(1)) {
    line.split(',').forEach((cell, j) => {
      if (!skip.has(j) && /\.\d{4,}/.test(cell)) out.add(cell)
    })
  }
  return out
}
