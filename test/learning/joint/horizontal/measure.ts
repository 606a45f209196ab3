/**
 * Full-size check (not part of the suite): FedAvg-LR and FedAvg-MLP on the three homo party files against the
 * pooled plaintext baselines with the same hyper-parameters, AUC on default_credit_homo_test.csv and wall time.
 *   node_modules/.bin/node test/learning/joint/horizontal/measure.ts [lr|mlp|dp|libp2p|all]
 * `libp2p` runs FedAvg-MLP over real libp2p nodes on 127.0.0.1 (sim/channels.ts) instead of memory channels.
 */
import type { PartyChannel } from '../../../../crypto/channel.ts'
import { concatRows } from '../../../../learning/data/dataset.ts'
import { fedAvgLogisticRegression, fedAvgMlp } from '../../../../learning/joint/horizontal/index.ts'
import { auc } from '../../../../learning/metrics/index.ts'
import { trainLogisticRegression } from '../../../../learning/models/lr.ts'
import { trainMlp } from '../../../../learning/models/mlp.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import { startLoopbackChannels } from '../../../../sim/channels.ts'
import { fulfilled, HOMO_PARTIES, loadHomo, localData, runParties } from './run.ts'

const which = process.argv[2] ?? 'all'
const parts = HOMO_PARTIES.map(loadHomo)
const pooled = localData(concatRows(parts))
const test = localData(loadHomo('test'))
const data = new Map(HOMO_PARTIES.map((n, i) => [n, localData(parts[i])]))
const seed = 7

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / 1e6
}

async function fed(
  alg: typeof fedAvgMlp,
  params: Record<string, unknown>,
  channels?: Map<string, PartyChannel>,
) {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  const parts = fulfilled(await runParties(alg, data, { params, seed, channels }))
  const seconds = (performance.now() - t0) / 1000
  const cpu = cpuSince(c0)
  const part = parts.get('guest')!
  return {
    seconds,
    cpu,
    auc: auc(test.y!, alg.predict(part, test)),
    params: part.params as Record<string, unknown>,
  }
}

if (which === 'lr' || which === 'all') {
  const h = { rounds: 30, batchSize: 256, learningRate: 0.5 }
  const t0 = performance.now()
  const m = trainLogisticRegression(pooled.X, pooled.y!, pooled.features, {
    solver: 'sgd',
    epochs: h.rounds,
    batchSize: h.batchSize,
    learningRate: h.learningRate,
    seed,
  })
  const plainS = (performance.now() - t0) / 1000
  const plainAuc = auc(test.y!, predictProba(m, test.X, test.rows))
  const f = await fed(fedAvgLogisticRegression, h)
  console.log(
    JSON.stringify({
      case: 'fedavg-lr',
      auc: f.auc,
      plain_auc: plainAuc,
      seconds: f.seconds,
      baseline_s: plainS,
      ratio: f.seconds / plainS,
      rounds: f.params.rounds,
    }),
  )
  const p = await fed(fedAvgLogisticRegression, { ...h, mu: 0.01 })
  console.log(JSON.stringify({ case: 'fedprox-lr mu=0.01', auc: p.auc, seconds: p.seconds }))
}
if (which === 'mlp' || which === 'all') {
  // Alternate plaintext and federated runs and keep the best of each: the machine is shared.
  let plainS = Number.POSITIVE_INFINITY
  let plainCpu = Number.POSITIVE_INFINITY
  let plainAuc = 0
  let best: Awaited<ReturnType<typeof fed>> | undefined
  for (let rep = 0; rep < 2; rep++) {
    const t0 = performance.now()
    const c0 = process.cpuUsage()
    const m = trainMlp(pooled.X, pooled.y!, pooled.features, { seed })
    plainS = Math.min(plainS, (performance.now() - t0) / 1000)
    plainCpu = Math.min(plainCpu, cpuSince(c0))
    plainAuc = auc(test.y!, predictProba(m, test.X, test.rows))
    const f = await fed(fedAvgMlp, {})
    if (!best || f.seconds < best.seconds) best = { ...f, cpu: Math.min(f.cpu, best?.cpu ?? f.cpu) }
  }
  const f = best!
  console.log(
    JSON.stringify({
      case: 'fedavg-mlp',
      auc: f.auc,
      plain_auc: plainAuc,
      seconds: f.seconds,
      baseline_s: plainS,
      ratio: f.seconds / plainS,
      cpu_s: f.cpu,
      baseline_cpu_s: plainCpu,
      cpu_ratio: f.cpu / plainCpu,
      rounds: f.params.rounds,
      target: 3,
    }),
  )
  const p = await fed(fedAvgMlp, { mu: 0.01 })
  console.log(
    JSON.stringify({ case: 'fedprox-mlp mu=0.01', auc: p.auc, seconds: p.seconds, rounds: p.params.rounds }),
  )
}
if (which === 'dp' || which === 'all') {
  for (const epsilon of [1, 3, 8]) {
    for (const [name, alg, extra] of [
      ['lr', fedAvgLogisticRegression, { rounds: 10, learningRate: 0.5 }],
      ['mlp', fedAvgMlp, { rounds: 20, learningRate: 3e-3 }],
    ] as const) {
      const f = await fed(alg, { ...extra, batchSize: 256, dp: { epsilon, delta: 1e-5, clipNorm: 1 } })
      const c = await fed(alg, {
        ...extra,
        rounds: extra.rounds / 2,
        batchSize: 256,
        dp: { mode: 'central', epsilon, delta: 1e-5, clipNorm: 1 },
      })
      console.log(
        JSON.stringify({
          case: `dp-central ${name}`,
          epsilon_target: epsilon,
          auc: c.auc,
          seconds: c.seconds,
          dp: c.params.dp,
        }),
      )
      console.log(
        JSON.stringify({
          case: `dp-local ${name}`,
          epsilon_target: epsilon,
          auc: f.auc,
          seconds: f.seconds,
          dp: f.params.dp,
        }),
      )
    }
  }
}
if (which === 'libp2p') {
  const lb = await startLoopbackChannels(HOMO_PARTIES, { session: `hfl-measure-${Date.now()}` })
  try {
    const t0 = performance.now()
    const m = trainMlp(pooled.X, pooled.y!, pooled.features, { seed })
    const plainS = (performance.now() - t0) / 1000
    const f = await fed(fedAvgMlp, {}, lb.channels)
    const bytes = HOMO_PARTIES.map((n) => lb.channels.get(n)!.stats().bytesSent)
    console.log(
      JSON.stringify({
        case: 'fedavg-mlp libp2p',
        auc: f.auc,
        plain_auc: auc(test.y!, predictProba(m, test.X, test.rows)),
        seconds: f.seconds,
        baseline_s: plainS,
        ratio: f.seconds / plainS,
        rounds: f.params.rounds,
        bytes_sent_per_party: bytes,
        target: 3,
      }),
    )
  } finally {
    await lb.stop()
  }
}
