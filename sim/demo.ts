import { peerIdFromString } from '@libp2p/peer-id'
import { runUntilSignal } from '../node/cli/node.ts'
import { missingLinks, type SimConsortium, startConsortium } from './consortium.ts'

/**
 * The main job a newcomer runs (`npm start`): three institutions on loopback form a consortium and connect;
 * their HTTP APIs stay up, with URLs and operator tokens printed, until Ctrl-C.
 */
export async function runDemo(
  opts: { logLevel?: string; out?: NodeJS.WritableStream } = {},
): Promise<SimConsortium> {
  const out = opts.out ?? process.stdout
  const t0 = performance.now()
  out.write('Starting three institution nodes on 127.0.0.1 (bank-a, lender-b, insurer-c)…\n')
  const sim = await startConsortium({
    names: ['bank-a', 'lender-b', 'insurer-c'],
    logLevel: opts.logLevel ?? 'warn',
  })
  const nodes = sim.nodes.map((n) => n.node)
  out.write(
    `Consortium "${sim.document.body.id}" formed and fully connected in ${((performance.now() - t0) / 1000).toFixed(2)} s\n\n`,
  )
  for (const n of sim.nodes) {
    const peers = n.node.membership
      .peers()
      .map((m) => `${m.name}${n.node.host.getConnections(peerIdFromString(m.peerId)).length ? ' ✓' : ' ✗'}`)
    out.write(`  ${n.name.padEnd(10)} ${n.node.peerId.toString()}\n`)
    out.write(`             libp2p ${n.node.addresses()[0]}\n`)
    out.write(`             api    ${n.node.httpUrl}   token ${n.token}\n`)
    out.write(`             peers  ${peers.join(', ')}\n`)
  }
  const missing = missingLinks(nodes)
  out.write(
    missing.length === 0
      ? '\nAll members connected (Noise-encrypted, members only).\n'
      : `\nnot connected: ${missing.join(', ')}\n`,
  )
  return sim
}

export async function demoCommand(opts: { logLevel?: string }): Promise<void> {
  const sim = await runDemo(opts)
  process.stdout.write(
    'Try: curl -H "Authorization: Bearer <token>" <api>/v1/peers   ·   Ctrl-C stops the nodes.\n',
  )
  await runUntilSignal(
    sim.nodes.map((n) => n.node),
    () => sim.stop(),
  )
}
