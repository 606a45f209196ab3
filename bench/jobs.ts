import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { verifyBundles } from '../governance/verify.ts'
import type { RunningNode } from '../node/daemon.ts'
import { loadIdentity } from '../node/identity.ts'
import type { JobRecord } from '../node/jobs/service.ts'
import type { ConsortiumDocument } from '../protocol/consortium.ts'
import { withTimeout } from '../protocol/define.ts'
import { signObject, verifyValue } from '../protocol/signing.ts'
import { type SimNode, startConsortium } from '../sim/consortium.ts'
import { joinConsortium, type PartyInfo, signedGenesis, startPartyNode } from '../sim/party-node.ts'
import { call } from '../sim/scenario.ts'
import { emit, percentile } from './report.ts'

/**
 * `npm run bench -- jobs [--jobs 200] [--threads true|false]`: three nodes with automatic approval; N noop jobs
 * proposed at once, spread over the three proposers. Latency is from the propose call to the moment the last
 * party reaches `succeeded`. Target (issue 3): p99 <= 200 ms on loopback. Cases:
 *
 * - `N noop jobs, 3 nodes, concurrent`: the first burst after the nodes start, all three nodes in this thread
 *   (so it includes compiling the code paths: V8 optimises them during the burst); then the offline
 *   verification of the three logs (target >= 20,000 entries/s).
 * - `20 noop jobs, 3 nodes, one at a time`: the latency an operator sees on a consortium that is not saturated.
 * - `N noop jobs, 3 nodes, concurrent, warm`: the same burst again in the same process, the steady state of a
 *   node that has been running.
 * - `operations of N noop jobs alone, 3 nodes`: the log entries, signatures, checks, record writes and transport
 *   items the warm burst performs, each kind timed on its own on the same nodes (see operationsAlone).
 * - `N noop jobs, 3 nodes in 3 threads, concurrent, warm` (unless `--threads false`): the deployment's shape,
 *   each node in its own worker thread with its own event loop (sim/party-node.ts), as each institution runs
 *   its own node on its own machine; one untimed burst first. This machine has 2 cores for the 3 nodes.
 */
export default async function jobs(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { jobs: { type: 'string', default: '200' }, threads: { type: 'string', default: 'true' } },
  })
  const n = Number(values.jobs)
  await inOneThread(n)
  if (values.threads !== 'false') await inThreads(n)
}

const NAMES = ['bank-a', 'lender-b', 'insurer-c']
const PARTIES = NAMES.map((name) => ({ name, roles: ['observer' as const] }))

/** Wall clock in milliseconds with sub-millisecond resolution, comparable between threads. */
const now = () => performance.timeOrigin + performance.now()

async function inOneThread(n: number): Promise<void> {
  const sim = await startConsortium({ names: NAMES, logLevel: 'silent' })
  try {
    const nodes = sim.nodes.map((s) => s.node)
    await Promise.all(sim.nodes.map((s) => setAutoApproval(s.node, s.token)))
    const cold = await burst(nodes, n, 'cold')
    // Each party's signed outcome is still on its way to the others when the last job succeeds: the one-at-a-
    // time runs start once every party holds every outcome, so they see a consortium that is not saturated.
    const settleMs = await settled(nodes, cold.ids)
    const single: number[] = []
    for (let i = 0; i < 20; i++) {
      const id = `bench-seq-${i}-${Date.now()}`
      const finished = succeededEverywhere(nodes, [id])
      const t = now()
      await nodes[i % 3].jobs.propose({ id, kind: 'noop', parties: PARTIES, timeoutSeconds: 600 })
      await finished
      single.push(now() - t)
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

    // Offline verification of the three logs the first burst produced, as an auditor would run it.
    for (const node of nodes) await node.governance.checkpointNow()
    for (const node of nodes) await node.governance.witnessAll()
    const bundles = await Promise.all(sim.nodes.map((s) => call(s.node, s.token, 'GET', '/v1/audit/export')))
    const entries = bundles.reduce((k: number, b) => k + (b as { entries: unknown[] }).entries.length, 0)
    const tv = performance.now()
    const report = await verifyBundles(bundles)
    const verifyS = (performance.now() - tv) / 1000
    if (!report.ok) throw new Error(`verification failed: ${JSON.stringify(report.failures.slice(0, 3))}`)
    emit({
      bench: 'jobs',
      case: `${n} noop jobs, 3 nodes, concurrent`,
      ...burstFigures(cold, n),
      log_entries: entries,
      verify_s: verifyS,
      verify_entries_per_s: entries / verifyS,
      target_verify_entries_per_s: 20000,
    })

    await settled(nodes, (await burst(nodes, n, 'warm-up')).ids)
    const warm = await burst(nodes, n, 'warm')
    await settled(nodes, warm.ids)
    emit({ bench: 'jobs', case: `${n} noop jobs, 3 nodes, concurrent, warm`, ...burstFigures(warm, n) })
    await operationsAlone(sim.nodes, n)
  } finally {
    await sim.stop()
  }
}

/**
 * What a burst of n jobs costs without the job service around it: the operations the warm burst performs,
 * counted per job over its three parties (docs/jobs.md), each kind on its own, on the same three nodes:
 * 17 log entries (appended in waves of about 100, as the burst's groups come), 7 signed job messages, 14
 * signature checks, 13 job record writes (in batches of about 60), and 30 transport items between the nodes
 * (12 job messages of 600 B, 12 acknowledgements of 60 B, 6 session records of 40 B). `seconds` is the sum of
 * the phases, each timed alone: a floor the whole burst cannot beat on this machine with these components.
 */
async function operationsAlone(sims: SimNode[], n: number): Promise<void> {
  const nodes = sims.map((s) => s.node)
  const keys = sims.map((s) => loadIdentity(s.node.dir).privateKey)
  const peers = nodes.map((node) => node.peerId.toString())
  const tag = `ops-${Date.now()}`
  const hash = (i: number) => createHash('sha256').update(`${tag}/${i}`).digest('hex')
  const each = (perJob: number) => Math.round((perJob * n) / nodes.length)
  const phases: Record<string, number> = {}
  const timed = async (name: string, fn: () => Promise<unknown>) => {
    const t = performance.now()
    await fn()
    phases[`${name}_s`] = (performance.now() - t) / 1000
  }
  const main0 = process.threadCpuUsage()
  const cpu0 = process.cpuUsage()
  await timed('log', () =>
    Promise.all(
      nodes.map(async (node, k) => {
        const waves = Math.max(1, Math.round(each(17) / 100))
        for (let w = 0; w < waves; w++)
          await Promise.all(
            Array.from({ length: Math.round(each(17) / waves) }, (_, i) =>
              node.governance.recorder.append(
                'job.vote',
                { decision: 'accept', specHash: hash(i), voter: peers[k] },
                { jobId: `${tag}-${w}-${i}` },
              ),
            ),
          )
      }),
    ),
  )
  const vote = (k: number, i: number) => ({
    decision: 'accept' as const,
    jobId: `${tag}-${i}`,
    specHash: hash(i),
    voter: peers[k],
  })
  let signed: Array<Array<Awaited<ReturnType<typeof signObject>>>> = []
  await timed('sign', async () => {
    signed = await Promise.all(
      keys.map((key, k) =>
        Promise.all(
          Array.from({ length: each(7) }, (_, i) =>
            signObject('job/vote/v1', vote(k, i), key, { batch: true }),
          ),
        ),
      ),
    )
  })
  await timed('verify', () =>
    Promise.all(
      nodes.flatMap((_, k) =>
        Array.from({ length: each(14) }, (_, i) => {
          const from = (k + 1 + (i % 2)) % nodes.length
          const { signature, ...body } = signed[from][i % signed[from].length]
          return verifyValue('job/vote/v1', body, peers[from], signature as string)
        }),
      ),
    ),
  )
  const record = {
    commit: { jobId: tag, signature: signed[0][0].signature, specHash: hash(0) },
    history: Array.from({ length: 6 }, () => ({ at: new Date().toISOString(), state: 'running' })),
    specHash: hash(1),
    state: 'succeeded',
    updatedAt: new Date().toISOString(),
  }
  await timed('records', () =>
    Promise.all(
      nodes.map(async (node, k) => {
        const batches = Math.max(1, Math.round(each(13) / 60))
        for (let b = 0; b < batches; b++)
          await node.store.db.batch(
            Array.from({ length: Math.round(each(13) / batches) }, (_, i) => ({
              type: 'put' as const,
              sublevel: node.store.sub('bench-operations'),
              key: `${tag}-${b}-${i}`,
              value: i % 2 ? record : signed[k][i % signed[k].length],
            })),
          )
      }),
    ),
  )
  const parties = Object.fromEntries(sims.map((s) => [s.name, s.node.peerId.toString()]))
  const channels = sims.map((s) => s.node.sessions.open(tag, s.name, parties))
  const items = [...Array(4).fill(600), ...Array(4).fill(60), ...Array(2).fill(40)] as number[]
  await timed('transport', () =>
    Promise.all(
      channels.map((ch, k) => {
        const ops: Promise<unknown>[] = []
        for (let i = 0; i < n; i++)
          for (const [j, bytes] of items.entries()) {
            const to = sims[(k + 1 + (j % 2)) % sims.length].name
            const from = sims[(k + 2 - (j % 2)) % sims.length].name
            ops.push(ch.send(to, `${i}/${j}`, new Uint8Array(bytes)), ch.recv(from, `${i}/${j}`))
          }
        return Promise.all(ops)
      }),
    ),
  )
  for (const ch of channels) ch.close()
  const main = process.threadCpuUsage(main0)
  const cpu = process.cpuUsage(cpu0)
  emit({
    bench: 'jobs',
    case: `operations of ${n} noop jobs alone, 3 nodes`,
    jobs: n,
    seconds: Object.values(phases).reduce((a, b) => a + b, 0),
    ...phases,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    main_thread_cpu_s: (main.user + main.system) / 1e6,
  })
}

interface Burst {
  ids: string[]
  /** Per job: propose call → last party succeeded, in ms. */
  latencies: number[]
  wallS: number
  cpuS: number
  /** CPU of the threads that run the nodes' JavaScript (this one, or each node's). */
  nodeThreadsCpuS: number[]
}

function burstFigures(b: Burst, n: number) {
  const lat = [...b.latencies].sort((x, y) => x - y)
  return {
    jobs: n,
    seconds: b.wallS,
    jobs_per_s: n / b.wallS,
    p50_ms: percentile(lat, 50),
    p99_ms: percentile(lat, 99),
    target_p99_ms: 200,
    cpu_s: b.cpuS,
    // Where the time goes: CPU of the whole process (all threads: crypto and LevelDB run on libuv's pool)
    // and of the threads running the nodes' JavaScript.
    ...(b.nodeThreadsCpuS.length === 1
      ? { main_thread_cpu_s: b.nodeThreadsCpuS[0] }
      : {
          node_threads_cpu_s: b.nodeThreadsCpuS.reduce((a, x) => a + x, 0),
          node_thread_cpu_max_s: Math.max(...b.nodeThreadsCpuS),
        }),
  }
}

/** N jobs proposed at once on `nodes` (all in this thread), round robin over the proposers. */
async function burst(nodes: RunningNode[], n: number, tag: string): Promise<Burst> {
  const ids = Array.from({ length: n }, (_, i) => `bench-${tag}-${i}-${Date.now()}`)
  const started = new Map<string, number>()
  const finished = succeededEverywhere(nodes, ids)
  const cpu0 = process.cpuUsage()
  const main0 = process.threadCpuUsage()
  const t0 = now()
  await Promise.all(
    ids.map(async (id, i) => {
      started.set(id, now())
      await nodes[i % 3].jobs.propose({ id, kind: 'noop', parties: PARTIES, timeoutSeconds: 600 })
    }),
  )
  const done = await withTimeout(finished, 120_000, `the ${tag} burst`)
  const cpu = process.cpuUsage(cpu0)
  const main = process.threadCpuUsage(main0)
  return {
    ids,
    latencies: ids.map((id) => done.get(id)! - started.get(id)!),
    wallS: (Math.max(...done.values()) - t0) / 1000,
    cpuS: (cpu.user + cpu.system) / 1e6,
    nodeThreadsCpuS: [(main.user + main.system) / 1e6],
  }
}

/** Resolves with, per job of `ids`, the time the last of `nodes` recorded it succeeded. */
function succeededEverywhere(nodes: RunningNode[], ids: string[]): Promise<Map<string, number>> {
  const want = new Set(ids)
  const on = new Map<string, number>()
  const done = new Map<string, number>()
  return new Promise((resolve) => {
    const offs = nodes.map((node) =>
      node.jobs.onChange((job: JobRecord) => {
        if (job.state !== 'succeeded' || !want.has(job.spec.id) || done.has(job.spec.id)) return
        const count = (on.get(job.spec.id) ?? 0) + 1
        on.set(job.spec.id, count)
        if (count < nodes.length) return
        done.set(job.spec.id, now())
        if (done.size < want.size) return
        for (const off of offs) off()
        resolve(done)
      }),
    )
  })
}

/** Waits until each of `nodes` holds the signed outcomes of all `parties` of `ids`; returns the wait (ms). */
async function settled(nodes: RunningNode[], ids: string[], parties = nodes.length): Promise<number> {
  const t = performance.now()
  const all = async () => {
    for (const node of nodes)
      for (const id of ids)
        if (Object.keys((await node.jobs.get(id))?.outcomes ?? {}).length < parties) return false
    return true
  }
  while (!(await all())) {
    if (performance.now() - t > 30_000) throw new Error('the burst did not settle within 30 s')
    await new Promise((r) => setTimeout(r, 10))
  }
  return performance.now() - t
}

/** Automatic approval, set through the node's API as an operator would. */
async function setAutoApproval(node: RunningNode, token: string): Promise<void> {
  await call(node, token, 'PUT', '/v1/policy', { approval: 'auto' })
}

// ---- each node in its own worker thread ---------------------------------------------------------------------

/** Coordinator → node thread. */
type Command =
  | { op: 'join'; doc: ConsortiumDocument }
  | { op: 'burst'; ids: string[]; propose: string[] }
  | { op: 'settle'; ids: string[] }
  | { op: 'stop' }
/** Node thread → coordinator. */
type Report =
  | { op: 'up'; info: PartyInfo }
  | { op: 'joined' }
  | { op: 'burst'; started: Record<string, number>; succeeded: Record<string, number>; cpuS: number }
  | { op: 'settled' }
  | { op: 'stopped' }
  | { op: 'error'; message: string }

/** The coordinator's handle on one node thread: commands out, and each command's one report back, in order. */
class NodeThread {
  private readonly worker: Worker
  private readonly waiting: Array<{ op: Report['op']; resolve(r: Report): void; reject(e: Error): void }> = []
  private failure: Error | undefined

  constructor(dir: string, name: string) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: { jobsBenchNode: { dir, name } } })
    this.worker.on('message', (r: Report) => {
      if (r.op === 'error') return this.fail(new Error(r.message))
      const w = this.waiting.shift()
      if (w?.op === r.op) w.resolve(r)
      else this.fail(new Error(`expected ${w?.op ?? 'nothing'} from the node thread, got ${r.op}`))
    })
    this.worker.on('error', (e) => this.fail(e))
  }

  next<T extends Report['op']>(op: T): Promise<Extract<Report, { op: T }>> {
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) =>
      this.waiting.push({ op, resolve: (r) => resolve(r as Extract<Report, { op: T }>), reject }),
    )
  }

  send(c: Command): void {
    this.worker.postMessage(c)
  }

  async terminate(): Promise<void> {
    await this.worker.terminate()
  }

  private fail(e: Error): void {
    this.failure ??= e
    for (const w of this.waiting.splice(0)) w.reject(e)
  }
}

async function inThreads(n: number): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'syndicate-jobs-bench-'))
  const threads = NAMES.map((name) => new NodeThread(join(base, name), name))
  try {
    const infos = await Promise.all(threads.map((t) => t.next('up')))
    const doc = await signedGenesis(infos.map((r) => r.info))
    for (const t of threads) t.send({ op: 'join', doc })
    await Promise.all(threads.map((t) => t.next('joined')))
    const run = async (tag: string): Promise<Burst> => {
      const ids = Array.from({ length: n }, (_, i) => `bench-${tag}-${i}-${Date.now()}`)
      const cpu0 = process.cpuUsage()
      const reports = threads.map((t) => t.next('burst'))
      threads.forEach((t, k) => {
        t.send({ op: 'burst', ids, propose: ids.filter((_, i) => i % threads.length === k) })
      })
      const results = await withTimeout(Promise.all(reports), 120_000, `the ${tag} burst`)
      const cpu = process.cpuUsage(cpu0)
      const started = Object.assign({}, ...results.map((r) => r.started)) as Record<string, number>
      const done = ids.map((id) => Math.max(...results.map((r) => r.succeeded[id])))
      for (const t of threads) t.send({ op: 'settle', ids })
      await Promise.all(threads.map((t) => t.next('settled')))
      return {
        ids,
        latencies: ids.map((id, i) => done[i] - started[id]),
        wallS: (Math.max(...done) - Math.min(...Object.values(started))) / 1000,
        cpuS: (cpu.user + cpu.system) / 1e6,
        nodeThreadsCpuS: results.map((r) => r.cpuS),
      }
    }
    await run('threads-warm-up')
    emit({
      bench: 'jobs',
      case: `${n} noop jobs, 3 nodes in 3 threads, concurrent, warm`,
      ...burstFigures(await run('threads'), n),
    })
    for (const t of threads) t.send({ op: 'stop' })
    await Promise.all(threads.map((t) => t.next('stopped')))
  } finally {
    await Promise.all(threads.map((t) => t.terminate()))
    rmSync(base, { recursive: true, force: true })
  }
}

/** A node in a worker thread, driven by the coordinator's commands. */
async function nodeThread({ dir, name }: { dir: string; name: string }): Promise<void> {
  const port = parentPort!
  const report = (r: Report) => port.postMessage(r)
  const { node, info, token } = await startPartyNode(dir, name, { logLevel: 'silent' })
  report({ op: 'up', info })
  port.on('message', (c: Command) => {
    handle(c).catch((e: Error) => report({ op: 'error', message: `${name}: ${e.stack ?? e.message}` }))
  })
  async function handle(c: Command): Promise<void> {
    switch (c.op) {
      case 'join':
        await joinConsortium(node, name, c.doc)
        await setAutoApproval(node, token)
        report({ op: 'joined' })
        return
      case 'burst': {
        const want = new Set(c.ids)
        const started: Record<string, number> = {}
        const succeeded: Record<string, number> = {}
        let count = 0
        const cpu0 = process.threadCpuUsage()
        const off = node.jobs.onChange((job: JobRecord) => {
          if (job.state !== 'succeeded' || !want.has(job.spec.id) || succeeded[job.spec.id]) return
          succeeded[job.spec.id] = now()
          if (++count < want.size) return
          off()
          const cpu = process.threadCpuUsage(cpu0)
          report({ op: 'burst', started, succeeded, cpuS: (cpu.user + cpu.system) / 1e6 })
        })
        await Promise.all(
          c.propose.map(async (id) => {
            started[id] = now()
            await node.jobs.propose({ id, kind: 'noop', parties: PARTIES, timeoutSeconds: 600 })
          }),
        )
        return
      }
      case 'settle':
        await settled([node], c.ids, NAMES.length)
        report({ op: 'settled' })
        return
      case 'stop':
        await node.stop()
        report({ op: 'stopped' })
        return
    }
  }
}

const threadJob = (workerData as { jobsBenchNode?: { dir: string; name: string } } | null)?.jobsBenchNode
if (!isMainThread && threadJob) await nodeThread(threadJob)
