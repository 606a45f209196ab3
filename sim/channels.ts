import type { PartyChannel } from '../crypto/channel.ts'
import { startConsortium } from './consortium.ts'

/**
 * Connected PartyChannels over real libp2p on 127.0.0.1, one node per party: what benchmarks and tests use to
 * run a joint protocol over the network path production uses.
 */
export async function startLoopbackChannels(
  names: string[],
  opts: { session?: string } = {},
): Promise<{ channels: Map<string, PartyChannel>; stop(): Promise<void> }> {
  const sim = await startConsortium({ names })
  const session = opts.session ?? `loopback-${Date.now()}`
  const parties = Object.fromEntries(sim.nodes.map((n) => [n.name, n.node.peerId.toString()]))
  const channels = new Map<string, PartyChannel>()
  for (const n of sim.nodes) channels.set(n.name, n.node.sessions.open(session, n.name, parties))
  return {
    channels,
    stop: async () => {
      for (const ch of channels.values()) ch.close()
      await sim.stop()
    },
  }
}
