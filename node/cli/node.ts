import type { Command } from 'commander'
import { type RunningNode, startNode } from '../daemon.ts'
import { UsageError } from '../errors.ts'
import { initNode } from '../init.ts'
import { ROLES } from '../tokens.ts'
import { apiCall, apiOptions, resolveTarget } from './client.ts'

export function registerNodeCommands(program: Command): void {
  program
    .command('init')
    .description('create a data directory with a new identity, a config file and an operator token')
    .requiredOption('--dir <dir>', 'data directory to create')
    .requiredOption('--name <name>', "this institution's node name")
    .option('--http-port <port>', 'HTTP API port written to the config', parsePort)
    .action(async (o: { dir: string; name: string; httpPort?: number }) => {
      const r = await initNode({ dir: o.dir, name: o.name, httpPort: o.httpPort })
      process.stdout.write(
        `initialised ${o.dir}\n  peer id:  ${r.peerId}\n  config:   ${r.configPath}\n\n` +
          `operator token (shown once; store it in a secret manager):\n  ${r.token}\n\n` +
          `start the node with: syndicate start --dir ${o.dir}\n`,
      )
    })

  program
    .command('start')
    .description('run the node until SIGINT/SIGTERM')
    .requiredOption('--dir <dir>', 'data directory')
    .option('--listen <addrs>', 'comma-separated libp2p listen multiaddrs', (s) => s.split(','))
    .option('--http-port <port>', 'HTTP API port', parsePort)
    .option('--log-level <level>', 'trace|debug|info|warn|error')
    .action(async (o: { dir: string; listen?: string[]; httpPort?: number; logLevel?: string }) => {
      const node = await startNode({
        dir: o.dir,
        overrides: { listen: o.listen, httpPort: o.httpPort, logLevel: o.logLevel },
      })
      await runUntilSignal([node])
    })

  apiOptions(
    program.command('status').description("show a running node's identity, addresses and consortium"),
  ).action(async (o) => {
    const info = await apiCall<Record<string, unknown>>(resolveTarget(o), 'GET', '/v1/node')
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`)
  })

  apiOptions(
    program.command('peers').description('list consortium members and whether they are connected'),
  ).action(async (o) => {
    const { peers } = await apiCall<{
      peers: Array<{ name: string; peerId: string; connected: boolean; remoteAddresses: string[] }>
    }>(resolveTarget(o), 'GET', '/v1/peers')
    if (peers.length === 0) process.stdout.write('no other members (is a consortium installed?)\n')
    for (const p of peers) {
      process.stdout.write(
        `${p.connected ? 'connected   ' : 'unreachable '} ${p.name.padEnd(16)} ${p.peerId} ${p.remoteAddresses.join(' ')}\n`,
      )
    }
  })

  const tokens = program.command('tokens').description('API tokens')
  apiOptions(tokens.command('create').description('create a token for a role (shown once)'))
    .requiredOption('--role <role>', ROLES.join('|'))
    .requiredOption('--label <label>', 'who or what the token is for')
    .action(async (o) => {
      const r = await apiCall<{ token: string }>(resolveTarget(o), 'POST', '/v1/tokens', {
        role: o.role,
        label: o.label,
      })
      process.stdout.write(`${r.token}\n`)
    })
}

function parsePort(s: string): number {
  const n = Number(s)
  if (!/^\d+$/.test(s) || n > 65535)
    throw new UsageError('ERR_CONFIG', `invalid port "${s}": expected 0-65535`)
  return n
}

/** Keeps nodes up until SIGINT or SIGTERM, then stops them cleanly and exits 0. */
export async function runUntilSignal(nodes: RunningNode[], onStop?: () => Promise<void>): Promise<never> {
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await Promise.all(nodes.map((n) => n.stop()))
  await onStop?.()
  process.exit(0)
}
