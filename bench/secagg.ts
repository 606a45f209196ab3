/**
 * `npm run bench -- secagg [--n 10,50] [--length 10000] [--transport all|both|memory|libp2p|threads,...]
 * [--repeat 3] [--libp2p-max 10] [--threads-max 10] [--threads-repeat 20] [--warmup 5] [--cpu-prof-dir DIR]`:
 * Bonawitz secure aggregation of n client vectors next to a plain sum (every client sends its vector to the
 * aggregator over the same channel, the aggregator adds them up), measured in the same run, alternating, best
 * of the timed runs. Three cases per n (`--transport`, a comma list; `all` = the three, `both` = memory and
 * libp2p):
 *
 * - `nN-memory-lenL`: every party in this thread on in-memory channels: the protocols' computation only, every
 *   client's after another on one core (best of `--repeat`).
 * - `nN-libp2p-lenL`: every party in this thread, each with its own libp2p node on 127.0.0.1: seconds are the
 *   SUM of every client's computation plus every party's per-message libp2p CPU (a fixed cost per message,
 *   whatever its size), as if the clients took turns on one machine (best of `--repeat`; n ≤ `--libp2p-max`).
 * - `nN-libp2p-threads-lenL` (`threads: true`): the deployment's shape: every party (aggregator and each client)
 *   in its own worker thread with its own libp2p node on 127.0.0.1, connected as sim/channels.ts connects them
 *   (sim/party-node.ts). Seconds run from one start signal (an Atomics notify from the aggregator's thread, so
 *   both ends of the timing are on one clock) until the aggregator holds the sum (checked equal to the plain
 *   sum). Each thread compiles its own code, so `--warmup` untimed runs of each kind come first, then best of
 *   `--threads-repeat`. This machine has 2 cores for the n + 1 threads, so the clients still share CPU and the
 *   figure is pessimistic against n + 1 machines. `cpu_s` adds the CPU time of every thread;
 *   `aggregator_cpu_s` and `client_cpu_max_s` split it. `rounds_only_s` times secure aggregation's message
 *   pattern alone (the same 7n messages and sizes, no computation): the floor that four round trips set on
 *   this transport; on the keyed lines, the keyed protocol's 3n messages (the aggregator stopping at the
 *   threshold's reveals, as the protocol does). `mesh_missing_links` counts directed member links not up when timing began (0: full mesh).
 *   n ≤ `--threads-max` (51 full nodes in 51 threads take minutes to start on this machine).
 *
 * - `nN-T-keyed-lenL` (T: memory, libp2p, libp2p-threads): one aggregation of a keyed session
 *   (crypto/secagg/keyed.ts) after its key setup (`setup_s`, timed once apart); the clients draw nothing ahead,
 *   so every aggregation's whole computation is inside `seconds`.
 * - `nN-T-keyed-prepared-lenL`: the same with each client's input-independent part (its whole mask, and the
 *   next aggregation's key pair, seed and share boxes: `KeyedSecAggClient.prepare`) drawn in an untimed gap
 *   before the aggregation, as a client does between training rounds; `seconds` is the input-dependent part, from the start until the
 *   aggregator holds the sum, and `prepare_cpu_s` the CPU the clients spent preparing it (added up; the
 *   median over the timed runs).
 *
 * In the single-thread cases cpu_s is the process CPU time (libp2p included). Bytes are what an average client
 * sends; messages counts every party's sends in one aggregation. docs/secagg.md explains what each case means
 * and where the time goes.
 */
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { AEAD_OVERHEAD } from '../crypto/aead.ts'
import { createMemoryChannels, type PartyChannel } from '../crypto/channel.ts'
import type { RingVector } from '../crypto/fixed.ts'
import { ringAdd } from '../crypto/mpc/ring.ts'
import {
  KeyedSecAggAggregator,
  KeyedSecAggClient,
  secAggAggregate,
  secAggClient,
} from '../crypto/secagg/index.ts'
import { startLoopbackChannels } from '../sim/channels.ts'
import { joinSession, type PartyInfo, signedGenesis, startPartyNode } from '../sim/party-node.ts'
import { emit, percentile, ratio } from './report.ts'

const TARGET_TIME_RATIO = 3
const TARGET_BYTES_RATIO = 2
const AGGREGATOR = 'aggregator'

export default async function secagg(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: 'string', default: '10,50' },
      length: { type: 'string', default: '10000' },
      transport: { type: 'string', default: 'all' },
      repeat: { type: 'string', default: '3' },
      // 51 libp2p nodes in one process time out opening session streams on a 2-core machine.
      'libp2p-max': { type: 'string', default: '10' },
      'threads-max': { type: 'string', default: '10' },
      // The threads case: untimed runs of each kind first, then this many timed ones (a run takes tens of ms
      // there against seconds to start the threads, and 11 threads on 2 cores are noisy).
      warmup: { type: 'string', default: '5' },
      'threads-repeat': { type: 'string', default: '20' },
      // Writes a V8 CPU profile per worker thread of the threads case (for `node --cpu-prof`-style analysis).
      'cpu-prof-dir': { type: 'string' },
    },
  })
  const length = Number(values.length)
  const repeat = Number(values.repeat)
  const transports =
    values.transport === 'all'
      ? ['memory', 'libp2p', 'threads']
      : values.transport === 'both'
        ? ['memory', 'libp2p']
        : values.transport!.split(',')
  for (const n of values.n!.split(',').map(Number)) {
    const clients = Array.from({ length: n }, (_, i) => `client${i}`)
    const names = [AGGREGATOR, ...clients]
    const inputs = clients.map(() => randomVector(length))
    for (const transport of transports) {
      if (transport === 'threads') {
        if (n > Number(values['threads-max'])) {
          process.stderr.write(
            `secagg: skipping threads at n=${n} (> --threads-max ${values['threads-max']})\n`,
          )
        } else {
          await threadsCase(
            n,
            length,
            Number(values['threads-repeat']),
            Number(values.warmup),
            values['cpu-prof-dir'],
          )
        }
        continue
      }
      if (transport === 'libp2p' && n > Number(values['libp2p-max'])) {
        process.stderr.write(`secagg: skipping libp2p at n=${n} (> --libp2p-max ${values['libp2p-max']})\n`)
        continue
      }
      let channels: Map<string, PartyChannel> = createMemoryChannels(names)
      let stop = async () => {}
      if (transport === 'libp2p') {
        const lb = await startLoopbackChannels(names, { session: `bench-secagg-${Date.now()}` })
        channels = lb.channels
        stop = lb.stop
      }
      try {
        const sent = () => clients.reduce((a, c) => a + channels.get(c)!.stats().bytesSent, 0)
        const messages = () => names.reduce((a, p) => a + channels.get(p)!.stats().messagesSent, 0)
        let plainS = Number.POSITIVE_INFINITY
        let secureS = Number.POSITIVE_INFINITY
        let plainBytes = 0
        let secureBytes = 0
        let plainMessages = 0
        let secureMessages = 0
        let plainCpu = Number.POSITIVE_INFINITY
        let secureCpu = Number.POSITIVE_INFINITY
        // Keyed: one key setup (timed once, apart), then one aggregation per repeat. Nothing is drawn ahead
        // (prepareNext: false): every aggregation's whole computation is inside its timing.
        const keyed = await keyedSession(channels, clients, length, 'keyed')
        let keyedS = Number.POSITIVE_INFINITY
        let keyedBytes = 0
        let keyedMessages = 0
        // Keyed, prepared: each client draws the next aggregation's input-independent part (its mask, the next
        // keys and their share boxes) in an untimed gap before it, as between training rounds.
        const prepared = await keyedSession(channels, clients, length, 'prepared')
        let preparedS = Number.POSITIVE_INFINITY
        let preparedBytes = 0
        let preparedMessages = 0
        // The median over the runs (a CPU clock is too coarse for a minimum of one preparation to mean much).
        const prepareCpu: number[] = []
        for (let r = 0; r < repeat; r++) {
          // Alternate so both see the same machine load.
          let b0 = sent()
          let m0 = messages()
          let c0 = process.cpuUsage()
          let t0 = performance.now()
          await Promise.all([
            plainAggregate(channels.get(AGGREGATOR)!, clients, length, `plain${r}`),
            ...clients.map((c, i) => plainSend(channels.get(c)!, inputs[i], `plain${r}`)),
          ])
          plainS = Math.min(plainS, (performance.now() - t0) / 1000)
          plainCpu = Math.min(plainCpu, cpuSince(c0))
          plainBytes = (sent() - b0) / n
          plainMessages = messages() - m0
          b0 = sent()
          m0 = messages()
          c0 = process.cpuUsage()
          t0 = performance.now()
          const o = secAggOptions(n, length, `secure${r}`)
          await Promise.all([
            secAggAggregate(channels.get(AGGREGATOR)!, o),
            ...clients.map((c, i) => secAggClient(channels.get(c)!, inputs[i], o)),
          ])
          secureS = Math.min(secureS, (performance.now() - t0) / 1000)
          secureCpu = Math.min(secureCpu, cpuSince(c0))
          secureBytes = (sent() - b0) / n
          secureMessages = messages() - m0
          b0 = sent()
          m0 = messages()
          t0 = performance.now()
          await Promise.all([
            keyed.agg.aggregate(r, length),
            ...keyed.clients.map((k, i) => k.aggregate(inputs[i], r)),
          ])
          keyedS = Math.min(keyedS, (performance.now() - t0) / 1000)
          keyedBytes = (sent() - b0) / n
          keyedMessages = messages() - m0
          // The idle gap: every client prepares round r (untimed; its median CPU is reported as prepare_cpu_s).
          c0 = process.cpuUsage()
          for (const k of prepared.clients) k.prepare(r, length)
          prepareCpu.push(cpuSince(c0))
          b0 = sent()
          m0 = messages()
          t0 = performance.now()
          await Promise.all([
            prepared.agg.aggregate(r, length),
            ...prepared.clients.map((k, i) => k.aggregate(inputs[i], r)),
          ])
          preparedS = Math.min(preparedS, (performance.now() - t0) / 1000)
          preparedBytes = (sent() - b0) / n
          preparedMessages = messages() - m0
        }
        emit({
          bench: 'secagg',
          case: `n${n}-${transport}-len${length}`,
          seconds: secureS,
          bytes_per_client: secureBytes,
          baseline_s: plainS,
          baseline_bytes_per_client: plainBytes,
          ratio: ratio(secureS, plainS),
          bytes_ratio: secureBytes / plainBytes,
          cpu_s: secureCpu,
          baseline_cpu_s: plainCpu,
          messages: secureMessages,
          baseline_messages: plainMessages,
          target: TARGET_TIME_RATIO,
          target_bytes_ratio: TARGET_BYTES_RATIO,
        })
        emit({
          bench: 'secagg',
          case: `n${n}-${transport}-keyed-len${length}`,
          seconds: keyedS,
          setup_s: keyed.setupS,
          bytes_per_client: keyedBytes,
          baseline_s: plainS,
          baseline_bytes_per_client: plainBytes,
          ratio: ratio(keyedS, plainS),
          bytes_ratio: keyedBytes / plainBytes,
          messages: keyedMessages,
          baseline_messages: plainMessages,
          target: TARGET_TIME_RATIO,
          target_bytes_ratio: TARGET_BYTES_RATIO,
        })
        emit({
          bench: 'secagg',
          case: `n${n}-${transport}-keyed-prepared-len${length}`,
          seconds: preparedS,
          setup_s: prepared.setupS,
          prepare_cpu_s: median(prepareCpu),
          bytes_per_client: preparedBytes,
          baseline_s: plainS,
          baseline_bytes_per_client: plainBytes,
          ratio: ratio(preparedS, plainS),
          bytes_ratio: preparedBytes / plainBytes,
          messages: preparedMessages,
          baseline_messages: plainMessages,
          target: TARGET_TIME_RATIO,
          target_bytes_ratio: TARGET_BYTES_RATIO,
        })
      } finally {
        await stop()
      }
    }
  }
}

/** A keyed session (key setup timed apart) whose clients draw nothing ahead unless told to (`prepare`). */
async function keyedSession(
  channels: Map<string, PartyChannel>,
  clients: string[],
  length: number,
  name: string,
): Promise<{ agg: KeyedSecAggAggregator; clients: KeyedSecAggClient[]; setupS: number }> {
  const t0 = performance.now()
  const o = secAggOptions(clients.length, length, `${name}-${Date.now()}`)
  const [agg, ...cs] = (await Promise.all([
    KeyedSecAggAggregator.setup(channels.get(AGGREGATOR)!, o),
    ...clients.map((c) => KeyedSecAggClient.setup(channels.get(c)!, { ...o, prepareNext: false })),
  ])) as [KeyedSecAggAggregator, ...KeyedSecAggClient[]]
  return { agg, clients: cs, setupS: (performance.now() - t0) / 1000 }
}

function randomVector(length: number): BigUint64Array {
  return new BigUint64Array(randomFillSync(new Uint8Array(8 * length)).buffer)
}

function secAggOptions(n: number, length: number, session: string) {
  return { session, aggregator: AGGREGATOR, threshold: Math.floor((2 * n) / 3) + 1, length }
}

function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  )
}

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / 1e6
}

/** The baseline, aggregator's side: adds up the clients' vectors as they were sent, in the clear. */
async function plainAggregate(
  agg: PartyChannel,
  clients: string[],
  length: number,
  tag: string,
): Promise<RingVector> {
  let acc: RingVector = new BigUint64Array(length)
  for (const c of clients) acc = ringAdd(acc, new BigUint64Array((await agg.recv(c, tag)).slice().buffer))
  return acc
}

/** The baseline, client's side: its vector to the aggregator. */
function plainSend(ch: PartyChannel, input: BigUint64Array, tag: string): Promise<void> {
  return ch.send(AGGREGATOR, tag, new Uint8Array(input.buffer))
}

// ---- The threads case: one worker thread (and one libp2p node) per party. ----

interface PartyData {
  secaggParty: {
    name: string
    dir: string
    clients: string[]
    length: number
    /** Int32 start counter: the aggregator's thread bumps it and notifies to start a run. */
    go: SharedArrayBuffer
  }
}

/**
 * What one timed run does: the plain sum, secure aggregation, secure aggregation's rounds alone (its 7n
 * messages with their sizes, no computation: the floor its message pattern sets on this transport), one
 * aggregation of a keyed session, or one of a keyed session whose clients prepared it before the start signal.
 */
type Kind = 'plain' | 'secure' | 'rounds' | 'keyed' | 'prepared' | 'keyed-rounds'

/** Coordinator → party. */
type Command =
  | { type: 'join'; doc: Awaited<ReturnType<typeof signedGenesis>>; session: string }
  | { type: 'arm'; kind: Kind; run: number; seq: number }
  | { type: 'fire' }
  | { type: 'stop' }

/** Party → coordinator. */
type Report =
  | { type: 'started'; info: PartyInfo }
  | { type: 'joined'; unconnected: number; setup_s?: number }
  | { type: 'armed' }
  | { type: 'done'; seconds?: number; cpu_s: number; bytes: number; messages: number; prepare_cpu_s?: number }
  | { type: 'stopped' }
  | { type: 'failed'; message: string }

interface Figures {
  seconds: number
  bytesPerClient: number
  messages: number
  cpuS: number
  aggregatorCpuS: number
  clientCpuMaxS: number
}

async function threadsCase(
  n: number,
  length: number,
  repeat: number,
  warmup: number,
  cpuProfDir?: string,
): Promise<void> {
  const clients = Array.from({ length: n }, (_, i) => `client${i}`)
  const names = [AGGREGATOR, ...clients]
  const baseDir = mkdtempSync(join(tmpdir(), 'syndicate-secagg-'))
  const go = new SharedArrayBuffer(4)
  const execArgv = cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : []
  const workers = names.map(
    (name) =>
      new Worker(new URL(import.meta.url), {
        workerData: {
          secaggParty: { name, dir: join(baseDir, name), clients, length, go },
        } satisfies PartyData,
        execArgv,
      }),
  )
  const inbox = workers.map((w) => reportQueue(w))
  const all = async <T extends Report['type']>(type: T) =>
    Promise.all(inbox.map((q) => q.next(type))) as Promise<Extract<Report, { type: T }>[]>
  const tell = (c: Command) => {
    for (const w of workers) w.postMessage(c)
  }
  try {
    let missingLinks = 0
    let setupS = 0
    try {
      const started = await all('started')
      const doc = await signedGenesis(started.map((s) => s.info))
      tell({ type: 'join', doc, session: `bench-secagg-threads-${Date.now()}` })
      const joined = await all('joined')
      missingLinks = joined.reduce((a, j) => a + j.unconnected, 0)
      setupS = joined[0].setup_s ?? 0
    } catch (e) {
      process.stderr.write(
        `secagg: skipping threads at n=${n}: ${n + 1} libp2p nodes did not start (${(e as Error).message})\n`,
      )
      return
    }
    const best: Partial<Record<Kind, Figures>> = {}
    const prepareCpu: number[] = []
    let seq = 0
    try {
      // Each thread compiles its own code: untimed warm-up runs first, as a node's later aggregations would be.
      for (let run = -warmup; run < repeat; run++) {
        // Alternate so all see the same machine load.
        for (const kind of ['plain', 'secure', 'rounds', 'keyed', 'prepared', 'keyed-rounds'] as const) {
          seq++
          tell({ type: 'arm', kind, run: run + warmup, seq })
          await all('armed')
          workers[0].postMessage({ type: 'fire' } satisfies Command)
          const done = await all('done')
          if (run < 0) continue
          const f: Figures = {
            seconds: done[0].seconds!,
            bytesPerClient: done.slice(1).reduce((a, d) => a + d.bytes, 0) / n,
            messages: done.reduce((a, d) => a + d.messages, 0),
            cpuS: done.reduce((a, d) => a + d.cpu_s, 0),
            aggregatorCpuS: done[0].cpu_s,
            clientCpuMaxS: Math.max(...done.slice(1).map((d) => d.cpu_s)),
          }
          // Thread CPU clocks tick in milliseconds here, too coarse for one preparation: the median over the runs.
          if (kind === 'prepared') prepareCpu.push(done.reduce((a, d) => a + (d.prepare_cpu_s ?? 0), 0))
          if (!best[kind] || f.seconds < best[kind].seconds) best[kind] = f
        }
      }
    } catch (e) {
      // At n = 50 a mesh link between two clients can drop mid-run, which fails the whole session.
      process.stderr.write(`secagg: threads at n=${n} failed during the runs: ${(e as Error).message}\n`)
      return
    }
    const [s, p, rounds] = [best.secure!, best.plain!, best.rounds!]
    emit({
      bench: 'secagg',
      case: `n${n}-libp2p-threads-len${length}`,
      threads: true,
      seconds: s.seconds,
      bytes_per_client: s.bytesPerClient,
      baseline_s: p.seconds,
      baseline_bytes_per_client: p.bytesPerClient,
      ratio: ratio(s.seconds, p.seconds),
      bytes_ratio: s.bytesPerClient / p.bytesPerClient,
      cpu_s: s.cpuS,
      baseline_cpu_s: p.cpuS,
      aggregator_cpu_s: s.aggregatorCpuS,
      baseline_aggregator_cpu_s: p.aggregatorCpuS,
      client_cpu_max_s: s.clientCpuMaxS,
      baseline_client_cpu_max_s: p.clientCpuMaxS,
      messages: s.messages,
      baseline_messages: p.messages,
      rounds_only_s: rounds.seconds,
      rounds_only_cpu_s: rounds.cpuS,
      rounds_only_aggregator_cpu_s: rounds.aggregatorCpuS,
      rounds_only_client_cpu_max_s: rounds.clientCpuMaxS,
      warmup_runs: warmup,
      mesh_missing_links: missingLinks,
      cores: navigator.hardwareConcurrency,
      threads_n: n + 1,
      target: TARGET_TIME_RATIO,
      target_bytes_ratio: TARGET_BYTES_RATIO,
    })
    for (const [kind, name] of [
      ['keyed', 'keyed'],
      ['prepared', 'keyed-prepared'],
    ] as const) {
      const k = best[kind]!
      const kr = best['keyed-rounds']!
      emit({
        bench: 'secagg',
        case: `n${n}-libp2p-threads-${name}-len${length}`,
        threads: true,
        seconds: k.seconds,
        setup_s: setupS,
        prepare_cpu_s: kind === 'prepared' ? median(prepareCpu) : undefined,
        bytes_per_client: k.bytesPerClient,
        baseline_s: p.seconds,
        baseline_bytes_per_client: p.bytesPerClient,
        ratio: ratio(k.seconds, p.seconds),
        bytes_ratio: k.bytesPerClient / p.bytesPerClient,
        cpu_s: k.cpuS,
        baseline_cpu_s: p.cpuS,
        aggregator_cpu_s: k.aggregatorCpuS,
        baseline_aggregator_cpu_s: p.aggregatorCpuS,
        client_cpu_max_s: k.clientCpuMaxS,
        baseline_client_cpu_max_s: p.clientCpuMaxS,
        messages: k.messages,
        baseline_messages: p.messages,
        rounds_only_s: kr.seconds,
        rounds_only_cpu_s: kr.cpuS,
        rounds_only_aggregator_cpu_s: kr.aggregatorCpuS,
        rounds_only_client_cpu_max_s: kr.clientCpuMaxS,
        warmup_runs: warmup,
        mesh_missing_links: missingLinks,
        cores: navigator.hardwareConcurrency,
        threads_n: n + 1,
        target: TARGET_TIME_RATIO,
        target_bytes_ratio: TARGET_BYTES_RATIO,
      })
    }
  } finally {
    tell({ type: 'stop' })
    // A party stuck in a failed run never reads `stop`: give the others a minute to stop their nodes.
    await Promise.race([
      Promise.all(inbox.map((q) => q.next('stopped').catch(() => undefined))),
      new Promise((r) => setTimeout(r, 60_000).unref()),
    ])
    await Promise.all(workers.map((w) => w.terminate()))
    rmSync(baseDir, { recursive: true, force: true })
  }
}

/** The reports of one worker in order; `next(type)` fails if the worker reports something else or dies. */
function reportQueue(w: Worker): {
  next<T extends Report['type']>(type: T): Promise<Extract<Report, { type: T }>>
} {
  const queued: Report[] = []
  let waiter: { resolve: (r: Report) => void; reject: (e: Error) => void } | undefined
  let failed: Error | undefined
  w.on('message', (r: Report) => {
    if (waiter) {
      const w0 = waiter
      waiter = undefined
      w0.resolve(r)
    } else queued.push(r)
  })
  const fail = (e: Error) => {
    failed = e
    waiter?.reject(e)
    waiter = undefined
  }
  w.on('error', fail)
  w.on('exit', (code) => fail(new Error(`worker exited with code ${code}`)))
  return {
    async next<T extends Report['type']>(type: T) {
      const r =
        queued.shift() ??
        (await new Promise<Report>((resolve, reject) => {
          if (failed) reject(failed)
          else waiter = { resolve, reject }
        }))
      if (r.type === 'failed') throw new Error(r.message)
      if (r.type !== type)
        throw new Error(`expected ${type} from a party, got ${JSON.stringify(r).slice(0, 200)}`)
      return r as Extract<Report, { type: T }>
    },
  }
}

/** One party of the threads case: its own libp2p node; runs what the coordinator arms, started by `go`. */
async function partyThread({ name, dir, clients, length, go }: PartyData['secaggParty']): Promise<void> {
  const parent = parentPort!
  const report = (r: Report) => parent.postMessage(r)
  const counter = new Int32Array(go)
  const n = clients.length
  // Warnings (replies cut off when the nodes stop) would mix with the JSON lines on stdout.
  const { node, info } = await startPartyNode(dir, name, { logLevel: 'error' })
  const commands: Command[] = []
  let wake: (() => void) | undefined
  parent.on('message', (c: Command) => {
    commands.push(c)
    wake?.()
  })
  const next = async (): Promise<Command> => {
    while (commands.length === 0) await new Promise<void>((r) => (wake = r))
    return commands.shift()!
  }
  report({ type: 'started', info })
  let ch: PartyChannel | undefined
  let keyed: KeyedSecAggClient | KeyedSecAggAggregator | undefined
  let prepared: KeyedSecAggClient | KeyedSecAggAggregator | undefined
  const input = name === AGGREGATOR ? undefined : randomVector(length)
  let plainSum: RingVector | undefined
  try {
    for (;;) {
      const c = await next()
      if (c.type === 'stop') break
      if (c.type === 'join') {
        // The protocol needs only the client-aggregator links; the rest of the mesh may still be forming at n = 50.
        const joined = await joinSession(node, name, c.doc, c.session, {
          required: name === AGGREGATOR ? clients : [AGGREGATOR],
          timeoutMs: Math.max(30_000, 5_000 * n),
        })
        ch = joined.channel
        // The keyed sessions of the `keyed` and `prepared` kinds: one key setup each, before any timed run.
        const t0 = performance.now()
        keyed = await keyedParty(ch, name, n, length, 'keyed')
        prepared = await keyedParty(ch, name, n, length, 'prepared')
        report({
          type: 'joined',
          unconnected: joined.unconnected.length,
          setup_s: (performance.now() - t0) / 2000,
        })
        continue
      }
      if (c.type !== 'arm' || !ch) throw new Error(`${name}: unexpected command ${c.type}`)
      const tag = `${c.kind}${c.run}`
      // The `prepared` kind: the client draws the aggregation's input-independent part now, before the start.
      let prepareCpu: number | undefined
      if (c.kind === 'prepared' && prepared instanceof KeyedSecAggClient) {
        const p0 = process.threadCpuUsage()
        prepared.prepare(c.run, length)
        const p = process.threadCpuUsage(p0)
        prepareCpu = (p.user + p.system) / 1e6
      }
      const b0 = ch.stats()
      const cpu0 = process.threadCpuUsage()
      if (name === AGGREGATOR) {
        report({ type: 'armed' })
        const fire = await next()
        if (fire.type !== 'fire') throw new Error(`${name}: expected fire, got ${fire.type}`)
        Atomics.store(counter, 0, c.seq)
        Atomics.notify(counter, 0)
        const t0 = performance.now()
        const sum =
          c.kind === 'plain'
            ? await plainAggregate(ch, clients, length, tag)
            : c.kind === 'secure'
              ? (await secAggAggregate(ch, secAggOptions(n, length, tag))).sum
              : c.kind === 'rounds'
                ? await roundsAggregator(ch, clients, length, tag)
                : c.kind === 'keyed-rounds'
                  ? await keyedRoundsAggregator(ch, clients, length, tag)
                  : (
                      await ((c.kind === 'keyed' ? keyed : prepared) as KeyedSecAggAggregator).aggregate(
                        c.run,
                        length,
                      )
                    ).sum
        const seconds = (performance.now() - t0) / 1000
        if (c.kind === 'plain') plainSum = sum
        else if (
          !c.kind.includes('rounds') &&
          (!plainSum || Buffer.compare(bytesOf(sum), bytesOf(plainSum)) !== 0)
        )
          throw new Error(`${c.kind} secure aggregation sum differs from the plain sum`)
        report({ type: 'done', seconds, ...since(ch, b0, cpu0) })
      } else {
        const started = waitAsync(counter, 0, c.seq - 1)
        report({ type: 'armed' })
        if (started.async) await started.value
        if (c.kind === 'plain') await plainSend(ch, input!, tag)
        else if (c.kind === 'secure') await secAggClient(ch, input!, secAggOptions(n, length, tag))
        else if (c.kind === 'rounds') await roundsClient(ch, n, input!, tag)
        else if (c.kind === 'keyed-rounds') await keyedRoundsClient(ch, n, input!, tag)
        else await ((c.kind === 'keyed' ? keyed : prepared) as KeyedSecAggClient).aggregate(input!, c.run)
        report({ type: 'done', prepare_cpu_s: prepareCpu, ...since(ch, b0, cpu0) })
      }
    }
  } catch (e) {
    report({ type: 'failed', message: `${name}: ${(e as Error).message}` })
  } finally {
    ch?.close()
    await node.stop()
    report({ type: 'stopped' })
  }
}

/** One party's end of a keyed session of the threads case (clients prepare only when told to). */
async function keyedParty(
  ch: PartyChannel,
  name: string,
  n: number,
  length: number,
  session: string,
): Promise<KeyedSecAggClient | KeyedSecAggAggregator> {
  const o = secAggOptions(n, length, session)
  return name === AGGREGATOR
    ? KeyedSecAggAggregator.setup(ch, o)
    : KeyedSecAggClient.setup(ch, { ...o, prepareNext: false })
}

// Message sizes of secure aggregation (crypto/secagg/secagg.ts): keys, a share box, a reveal entry.
const KEYS_BYTES = 2 + 64
const BOX_BYTES = 2 + 64 + AEAD_OVERHEAD
const REVEAL_BYTES = 2 + 1 + 32

/** Secure aggregation's client messages and waits without its computation (the `rounds` kind). */
async function roundsClient(ch: PartyChannel, n: number, input: BigUint64Array, tag: string): Promise<void> {
  await ch.send(AGGREGATOR, `${tag}/adv`, new Uint8Array(64))
  await ch.recv(AGGREGATOR, `${tag}/keys`)
  await ch.send(AGGREGATOR, `${tag}/shares`, new Uint8Array((n - 1) * BOX_BYTES))
  await ch.recv(AGGREGATOR, `${tag}/inbox`)
  await ch.send(AGGREGATOR, `${tag}/masked`, new Uint8Array(input.buffer))
  await ch.recv(AGGREGATOR, `${tag}/unmask`)
  await ch.send(AGGREGATOR, `${tag}/reveal`, new Uint8Array(n * REVEAL_BYTES))
}

/** The aggregator's side of `roundsClient`: collects each round from every client and answers each. */
async function roundsAggregator(
  ch: PartyChannel,
  clients: string[],
  length: number,
  tag: string,
): Promise<RingVector> {
  const n = clients.length
  const round = async (from: string, to: string | undefined, bytes: number) => {
    const got = await Promise.all(clients.map((c) => ch.recv(c, `${tag}/${from}`)))
    if (to) await Promise.all(clients.map((c) => ch.send(c, `${tag}/${to}`, new Uint8Array(bytes))))
    return got
  }
  await round('adv', 'keys', n * KEYS_BYTES)
  await round('shares', 'inbox', (n - 1) * BOX_BYTES)
  const masked = await round('masked', 'unmask', 2 * n)
  await round('reveal', undefined, 0)
  return sumOf(masked, length)
}

// Message sizes of keyed secure aggregation (crypto/secagg/keyed.ts): the next aggregation's public key, a share
// box in the masked message and in the unmask message.
const NEXT_KEY_BYTES = 32
const NEXT_BOX_BYTES = 2 + 64 + AEAD_OVERHEAD
const NEXT_RECORD_BYTES = 2 + 32 + 64 + AEAD_OVERHEAD

/** Keyed secure aggregation's client messages and waits without its computation (the `keyed-rounds` kind). */
async function keyedRoundsClient(
  ch: PartyChannel,
  n: number,
  input: BigUint64Array,
  tag: string,
): Promise<void> {
  const masked = new Uint8Array(input.byteLength + NEXT_KEY_BYTES + (n - 1) * NEXT_BOX_BYTES)
  masked.set(new Uint8Array(input.buffer))
  await ch.send(AGGREGATOR, `${tag}/masked`, masked)
  await ch.recv(AGGREGATOR, `${tag}/unmask`)
  await ch.send(AGGREGATOR, `${tag}/reveal`, new Uint8Array(n * REVEAL_BYTES))
}

/** The aggregator's side of `keyedRoundsClient`; like the protocol, it stops at the threshold's reveals. */
async function keyedRoundsAggregator(
  ch: PartyChannel,
  clients: string[],
  length: number,
  tag: string,
): Promise<RingVector> {
  const n = clients.length
  const masked = await Promise.all(clients.map((c) => ch.recv(c, `${tag}/masked`)))
  const unmask = new Uint8Array(2 + 2 * n + (n - 1) * NEXT_RECORD_BYTES)
  await Promise.all(clients.map((c) => ch.send(c, `${tag}/unmask`, unmask)))
  let got = 0
  const t = secAggOptions(n, length, tag).threshold
  await new Promise<void>((resolve) => {
    for (const c of clients) {
      ch.recv(c, `${tag}/reveal`).then(
        () => ++got === t && resolve(),
        () => undefined,
      )
    }
  })
  return sumOf(masked, length)
}

/** The ring sum of the first `length` elements of each masked vector received (what the rounds-only kinds add). */
function sumOf(masked: Uint8Array[], length: number): RingVector {
  let acc: RingVector = new BigUint64Array(length)
  for (const m of masked) acc = ringAdd(acc, new BigUint64Array(m.slice(0, 8 * length).buffer))
  return acc
}

function since(ch: PartyChannel, b0: ReturnType<PartyChannel['stats']>, cpu0: NodeJS.CpuUsage) {
  const b = ch.stats()
  const cpu = process.threadCpuUsage(cpu0)
  return {
    cpu_s: (cpu.user + cpu.system) / 1e6,
    bytes: b.bytesSent - b0.bytesSent,
    messages: b.messagesSent - b0.messagesSent,
  }
}

// ES2024's Atomics.waitAsync (in Node since 16); the project's TypeScript lib predates it.
const waitAsync = (
  Atomics as unknown as {
    waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string }
  }
).waitAsync

function bytesOf(v: RingVector): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
}

// Run as a worker thread by `threadsCase`: one party.
const party = (workerData as PartyData | null)?.secaggParty
if (!isMainThread && party) await partyThread(party)
