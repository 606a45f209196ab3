import { parseArgs } from 'node:util'
import { verifyBundles } from '../governance/verify.ts'
import type { JobRecord } from '../node/jobs/service.ts'
import { startConsortium } from '../sim/consortium.ts'
import { emit, percentile } from './report.ts'

/**
 * `npm run bench -- jobs [--jobs 200]`: three nodes with automatic approval; N noop jobs proposed at once,
 * spread over the three proposers. Latency is from the propose call to the moment the last party reaches
 * `succeeded`. Targets (issue 3): p99 <= 200 ms on loopback.
 */
export default async function jobs(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { jobs: { type: 'string', default: '200' } } })
  const n = Number(values.jobs)
  const sim = await startConsortium({ names: ['bank-a', 'lender-b', 'insurer-c'], logLevel: 'silent' })
  try {
    const nodes = sim.nodes.map((s) => s.node)
    // Automatic approval everywhere, set through the API as an operator would.
    await Promise.all(
      sim.nodes.map((s) =>
        fetch(`${s.node.httpUrl}/v1/policy`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ approval: 'auto' }),
        }),
      ),
    )
    const started = new Map<string, number>()
    const succeededOn = new Map<string, Set<string>>()
    const done = new Map<string, number>()
    let resolveAll: () => void = () => {}
    const all = new Promise<void>((r) => {
      resolveAll = r
    })
    for (const node of nodes) {
      node.jobs.onChange((job: JobRecord) => {
        if (job.state !== 'succeeded' || done.has(job.spec.id)) return
        const on = succeededOn.get(job.spec.id) ?? new Set<string>()
        on.add(node.config.name)
        succeededOn.set(job.spec.id, on)
        if (on.size === 3) {
          done.set(job.spec.id, performance.now())
          if (done.size === n) resolveAll()
        }
      })
    }
    const parties = sim.nodes.map((s) => ({ name: s.name, roles: ['observer' as const] }))
    const t0 = performance.now()
    // Where the time goes: CPU of the whole process (all threads: crypto and LevelDB run on libuv's pool)
    // and of the main thread, which runs all three nodes' JavaScript.
    const cpu0 = process.cpuUsage()
    const main0 = process.threadCpuUsage()
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const id = `bench-${i}-${Date.now()}`
        started.set(id, performance.now())
        await nodes[i % 3].jobs.propose({ id, kind: 'noop', parties, timeoutSeconds: 600 })
      }),
    )
    await Promise.race([
      all,
      new Promise((_, rej) =>
        setTimeout(() => rej(new Error(`only ${done.size}/${n} jobs finished in 120 s`)), 120_000),
      ),
    ])
    const wall = (performance.now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    const main = process.threadCpuUsage(main0)
    const lat = [...done.entries()].map(([id, t]) => t - started.get(id)!).sort((a, b) => a - b)
    // Each party's signed outcome is still on its way to the others when the last job succeeds: the one-at-a-
    // time runs start once every party holds every outcome, so they see a consortium that is not saturated.
    const tSettle = performance.now()
    const burstIds = [...done.keys()]
    const settled = async () => {
      for (const node of nodes)
        for (const id of burstIds)
          if (Object.keys((await node.jobs.get(id))?.outcomes ?? {}).length < 3) return false
      return true
    }
    while (!(await settled())) {
      if (performance.now() - tSettle > 30_000) throw new Error('the burst did not settle within 30 s')
      await new Promise((r) => setTimeout(r, 10))
    }
    const settleMs = performance.now() - tSettle
    // The same path one job at a time: the latency an operator sees when the consortium is not saturated.
    const single: number[] = []
    for (let i = 0; i < 20; i++) {
      const id = `bench-seq-${i}-${Date.now()}`
      const t = performance.now()
      started.set(id, t)
      const finished = new Promise<void>((resolve) => {
        const off = nodes.map((node) =>
          node.jobs.onChange((job: JobRecord) => {
            if (job.spec.id === id && done.has(id)) {
              for (const o of off) o()
              resolve()
            }
          }),
        )
      })
      await nodes[i % 3].jobs.propose({ id, kind: 'noop', parties, timeoutSeconds: 600 })
      await finished
      single.push(done.get(id)! - t)
    }
    single.sort((a, b) => a - b)
    emit({
      bench: 'jobs',
      case: '20 noop jobs, 3 nodes, one at a time',
      jobs: 20,
      after_burst_settled_ms: settleMs,
      p50_ms: percentile(single, 50),
      p99_ms: percentile(single, 99),
    })

    // Offline verification of the three logs the run produced, as an auditor would run it.
    for (const node of nodes) await node.governance.checkpointNow()
    for (const node of nodes) await node.governance.witnessAll()
    const bundles = await Promise.all(
      sim.nodes.map(async (s) => {
        const r = await fetch(`${s.node.httpUrl}/v1/audit/export`, {
          headers: { authorization: `Bearer ${s.token}` },
        })
        return r.json()
      }),
    )
    const entries = bundles.reduce((k: number, b) => k + (b as { entries: unknown[] }).entries.length, 0)
    const tv = performance.now()
    const report = await verifyBundles(bundles)
    const verifyS = (performance.now() - tv) / 1000
    if (!report.ok) throw new Error(`verification failed: ${JSON.stringify(report.failures.slice(0, 3))}`)
    emit({
      bench: 'jobs',
      case: `${n} noop jobs, 3 nodes, concurrent`,
      jobs: n,
      seconds: wall,
      jobs_per_s: n / wall,
      p50_ms: percentile(lat, 50),
      p99_ms: percentile(lat, 99),
      target_p99_ms: 200,
      cpu_s: (cpu.user + cpu.system) / 1e6,
      main_thread_cpu_s: (main.user + main.system) / 1e6,
      log_entries: entries,
      verify_s: verifyS,
      verify_entries_per_s: entries / verifyS,
      target_verify_entries_per_s: 20000,
    })
  } finally {
    await sim.stop()
  }
}
