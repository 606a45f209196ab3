import type { Command } from 'commander'
import { runUntilSignal } from '../node/cli/node.ts'
import { startConsortium } from './consortium.ts'
import { demoCommand } from './demo.ts'

export function registerSimCommands(program: Command): void {
  program
    .command('demo')
    .description('the main job: a three-institution consortium on loopback (what `npm start` runs)')
    .option(
      '--log-level <level>',
      'node log level (warnings of busy peers are expected while homomorphic encryption runs)',
      'error',
    )
    .option('--no-train', 'only form the consortium, run no jobs')
    .action((o: { logLevel: string; train: boolean }) => demoCommand(o))

  const sim = program.command('sim').description('simulate a consortium on this machine')
  sim
    .command('up')
    .description('start N nodes in this process on 127.0.0.1, form a consortium and keep it up until Ctrl-C')
    .option('--nodes <n>', 'number of nodes', (s) => Number(s), 3)
    .option('--log-level <level>', 'node log level', 'warn')
    .action(async (o: { nodes: number; logLevel: string }) => {
      if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 200)
        throw new Error('--nodes must be 1..200')
      const t0 = performance.now()
      const c = await startConsortium({ nodes: o.nodes, logLevel: o.logLevel })
      process.stdout.write(
        `${o.nodes} nodes connected in full mesh in ${((performance.now() - t0) / 1000).toFixed(2)} s (data under ${c.baseDir})\n`,
      )
      for (const n of c.nodes)
        process.stdout.write(`  ${n.name.padEnd(10)} ${n.node.httpUrl}  token ${n.token}\n`)
      process.stdout.write('Ctrl-C stops the nodes and removes their data.\n')
      await runUntilSignal(
        c.nodes.map((n) => n.node),
        () => c.stop(),
      )
    })
}
