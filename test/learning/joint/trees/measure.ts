/**
 * Full-size check of the tree algorithms (too slow for the unit suite): joint vs pooled plaintext AUC and time,
 * one JSON line per run. CPU seconds are reported next to wall seconds: on a shared machine the CPU time of
 * this process is the load-independent figure (all parties run in this process).
 *   node_modules/.bin/node test/learning/joint/trees/measure.ts secureboost [rows|0=all] [featureHolders] [trees]
 *   node_modules/.bin/node test/learning/joint/trees/measure.ts secureboost-libp2p [rows|0=all] [featureHolders] [trees]
 *   node_modules/.bin/node test/learning/joint/trees/measure.ts federated
 */

import { concatRows } from '../../../../learning/data/dataset.ts'
import { federatedGbdt, secureBoost } from '../../../../learning/joint/trees/index.ts'
import { auc } from '../../../../learning/metrics/ranking.ts'
import { trainGbdt } from '../../../../learning/models/gbdt.ts'
import { predictProba } from '../../../../learning/models/predict.ts'
import { startLoopbackChannels } from '../../../../sim/channels.ts'
import { fulfilled, HOMO_PARTIES, loadHomo, localData, runParties } from '../horizontal/run.ts'
import { runVertical, verticalSplit } from './run.ts'

const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

async function timed<T>(f: () => T | Promise<T>): Promise<{ value: T; seconds: number; cpu: number }> {
  const t0 = performance.now()
  const c0 = cpu()
  const value = await f()
  return { value, seconds: (performance.now() - t0) / 1000, cpu: cpu() - c0 }
}

const [what = 'secureboost', rowsArg, hostsArg, treesArg] = process.argv.slice(2)
const trees = treesArg ? Number(treesArg) : 30
const params = { trees, maxDepth: 3, learningRate: 0.3, maxBins: 32 }

if (what === 'secureboost' || what === 'secureboost-libp2p') {
  const hosts = hostsArg ? Number(hostsArg) : 1
  const s = verticalSplit({ rows: Number(rowsArg ?? 0) || undefined, hosts })
  const j = s.joined
  const base = await timed(() => trainGbdt(j.train.X, j.train.y!, j.train.features, params))
  // libp2p: one real node per party on 127.0.0.1 (sim/channels.ts), all in this process.
  const net = what === 'secureboost-libp2p' ? await startLoopbackChannels([...s.train.keys()]) : undefined
  const joint = await timed(() => runVertical(secureBoost, s.train, s.test, params, net?.channels))
  await net?.stop()
  console.log(
    JSON.stringify({
      bench: 'secureboost',
      case: `${j.train.rows} rows, ${hosts} feature holder(s), ${trees} trees, ${net ? 'libp2p loopback' : 'in memory'}`,
      seconds: joint.seconds,
      baseline_s: base.seconds,
      ratio: joint.seconds / base.seconds,
      cpu_seconds: joint.cpu,
      baseline_cpu_s: base.cpu,
      cpu_ratio: joint.cpu / base.cpu,
      target: 30,
      auc: auc(j.test.y!, joint.value.scores),
      baseline_auc: auc(j.test.y!, predictProba(base.value, j.test.X, j.test.rows)),
    }),
  )
}

if (what === 'federated') {
  const parts = HOMO_PARTIES.map(loadHomo)
  const test = localData(loadHomo('test'))
  const pooled = localData(concatRows(parts))
  const base = await timed(() => trainGbdt(pooled.X, pooled.y!, pooled.features, params))
  const data = new Map(HOMO_PARTIES.map((n, i) => [n, localData(parts[i])]))
  const joint = await timed(async () => fulfilled(await runParties(federatedGbdt, data, { params })))
  console.log(
    JSON.stringify({
      bench: 'federated-gbdt',
      case: `3 parties x 8,000 rows, ${trees} trees`,
      seconds: joint.seconds,
      baseline_s: base.seconds,
      ratio: joint.seconds / base.seconds,
      cpu_seconds: joint.cpu,
      baseline_cpu_s: base.cpu,
      auc: auc(test.y!, federatedGbdt.predict(joint.value.get('guest')!, test)),
      baseline_auc: auc(test.y!, predictProba(base.value, test.X, test.rows)),
      target: 0.78,
    }),
  )
}
