import { parseArgs } from 'node:util'
import { startConsortium } from '../sim/consortium.ts'
import { emit } from './report.ts'

/**
 * `npm run bench -- mesh [--nodes 25]`: N in-process nodes form a consortium; time from start to full mesh
 * (every pair connected) and the process's resident memory once connected.
 * Targets (issue 2): full mesh of 25 nodes in <= 10 s and <= 1,500 MB RSS.
 */
export default async function mesh(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { nodes: { type: 'string', default: '25' } } })
  const n = Number(values.nodes)
  const t0 = performance.now()
  const sim = await startConsortium({ nodes: n, logLevel: 'silent', connectTimeoutMs: 120_000 })
  const connectS = (performance.now() - t0) / 1000
  const rssMb = process.memoryUsage().rss / 2 ** 20
  const connections = sim.nodes.reduce((s, x) => s + x.node.host.getConnections().length, 0)
  await sim.stop()
  emit({
    bench: 'mesh',
    case: `${n} nodes`,
    nodes: n,
    connect_s: connectS,
    start_s: sim.timings.startS,
    mesh_s: sim.timings.meshS,
    rss_mb: rssMb,
    connections_total: connections,
    target_connect_s: 10,
    target_rss_mb: 1500,
  })
}
