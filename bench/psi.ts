/**
 * `npm run bench -- psi [--n 100000] [--overlap 0.5] [--chunk 10000] [--transport both|memory|libp2p]
 * [--parties 2]`: ECDH PSI between parties holding n ids each, in one process sharing one worker pool (both
 * cores). The baseline is the bare X25519 multiplications the protocol needs (2n per party for two parties,
 * N·n per party for N), run on the same pool in the same run with the points imported beforehand.
 */
import { getRandomValues, randomFillSync } from 'node:crypto'
import { parseArgs } from 'node:util'
import { createMemoryChannels, type PartyChannel } from '../crypto/channel.ts'
import { runPsi, sharedPsiPool } from '../crypto/psi/index.ts'
import { startLoopbackChannels } from '../sim/channels.ts'
import { emit, ratio } from './report.ts'

const TARGET_S = 15
const TARGET_RATIO = 1.5

export default async function psi(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: 'string', default: '100000' },
      overlap: { type: 'string', default: '0.5' },
      chunk: { type: 'string', default: '10000' },
      transport: { type: 'string', default: 'both' },
      parties: { type: 'string', default: '2' },
    },
  })
  const n = Number(values.n)
  const parties = Number(values.parties)
  const names = Array.from({ length: parties }, (_, i) => `bank${i}`)
  // Every party holds the same overlap·n common ids plus ids of its own, so the N-way intersection is overlap·n.
  const common = Math.round(n * Number(values.overlap))
  const sets = names.map((_, j) =>
    Array.from({ length: n }, (_, i) => (i < common ? `cust-${i}` : `cust-${j}-${i}`)),
  )
  const expected = common
  const pool = sharedPsiPool()

  const transports = values.transport === 'both' ? ['memory', 'libp2p'] : [values.transport!]
  for (const transport of transports) {
    let stop = async () => {}
    let channels: Map<string, PartyChannel>
    if (transport === 'libp2p') {
      const lb = await startLoopbackChannels(names, { session: `bench-psi-${Date.now()}` })
      channels = lb.channels
      stop = lb.stop
    } else {
      channels = createMemoryChannels(names)
    }
    try {
      // Measured right before and after each case (and averaged) so both see the same machine load.
      const before = await bareBaseline(parties * parties * n)
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      const res = await Promise.all(
        names.map((p, j) =>
          runPsi(channels.get(p)!, sets[j], {
            session: `bench-${transport}`,
            chunk: Number(values.chunk),
            pool,
          }),
        ),
      )
      const seconds = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage(cpu0)
      const cpuSeconds = (cpu.user + cpu.system) / 1e6
      const after = await bareBaseline(parties * parties * n)
      const baseline = {
        seconds: (before.seconds + after.seconds) / 2,
        cpuSeconds: (before.cpuSeconds + after.cpuSeconds) / 2,
      }
      // Every party's rows name the same ids in the same order, and as many as expected.
      const order = (j: number) => Array.from(res[j].rows!, (r) => sets[j][r])
      const first = order(0)
      const aligned =
        first.length === expected && names.every((_, j) => order(j).every((id, k) => id === first[k]))
      const bytes = names.reduce((a, p) => a + channels.get(p)!.stats().bytesSent, 0)
      emit({
        bench: 'psi',
        case: `${parties}party-${transport}-${n}`,
        seconds,
        items_per_s: (parties * n) / seconds,
        items_per_s_per_core: (parties * n) / seconds / pool.size,
        bytes,
        intersection: res[0].rows!.length,
        aligned,
        baseline_s: baseline.seconds,
        ratio: ratio(seconds, baseline.seconds),
        cpu_s: cpuSeconds,
        baseline_cpu_s: baseline.cpuSeconds,
        cpu_ratio: ratio(cpuSeconds, baseline.cpuSeconds),
        // What the wall time would be with both cores free (the machine is shared): CPU time over cores.
        idle_estimate_s: cpuSeconds / pool.size,
        target: TARGET_S,
        target_ratio: TARGET_RATIO,
        meets_target: seconds <= TARGET_S && ratio(seconds, baseline.seconds) <= TARGET_RATIO,
      })
    } finally {
      await stop()
    }
  }
  await pool.close()
}

/** `count` bare X25519 multiplications on the pool's workers: ideal parallel seconds and CPU seconds. */
async function bareBaseline(count: number): Promise<{ seconds: number; cpuSeconds: number }> {
  const points = randomFillSync(new Uint8Array(32 * count))
  for (let i = 31; i < points.length; i += 32) points[i] &= 0x7f
  return sharedPsiPool().bare(getRandomValues(new Uint8Array(32)), points)
}
