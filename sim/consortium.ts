import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DestinationStream } from 'pino'
import { type RunningNode, startNode } from '../node/daemon.ts'
import { initNode } from '../node/init.ts'
import type { ConsortiumDocument } from '../protocol/consortium.ts'
import { signedGenesis } from './party-node.ts'

/**
 * Starts a consortium of N nodes in this process, each with its own data directory under one temporary folder,
 * on 127.0.0.1 with port 0 for libp2p and HTTP. The genesis document is signed by every node's own key and
 * installed on each, as operators would do by hand; resolves once every pair of members is connected.
 */
export interface SimNode {
  name: string
  node: RunningNode
  /** The operator token created at init. */
  token: string
}

export interface SimConsortium {
  nodes: SimNode[]
  document: ConsortiumDocument
  baseDir: string
  /** Seconds spent initialising and starting the nodes, and then until the full mesh. */
  timings: { startS: number; meshS: number }
  stop(): Promise<void>
}

export interface SimOptions {
  nodes?: number
  names?: string[]
  baseDir?: string
  logLevel?: string
  logDestination?: DestinationStream
  /** Give up waiting for the full mesh after this long. */
  connectTimeoutMs?: number
  threshold?: number
  /** Node name → enclave processes it runs (an enclave host for `tee` jobs). */
  enclaves?: Record<string, number>
}

export async function startConsortium(opts: SimOptions = {}): Promise<SimConsortium> {
  const names = opts.names ?? Array.from({ length: opts.nodes ?? 3 }, (_, i) => `node${i + 1}`)
  if (names.length < 1) throw new Error('a consortium needs at least one node')
  const baseDir = opts.baseDir ?? mkdtempSync(join(tmpdir(), 'syndicate-sim-'))
  const ownsDir = opts.baseDir === undefined
  const nodes: SimNode[] = []
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.node.stop()))
    if (ownsDir) rmSync(baseDir, { recursive: true, force: true })
  }
  const t0 = performance.now()
  try {
    await Promise.all(
      names.map(async (name) => {
        const dir = join(baseDir, name)
        const { token } = await initNode({ dir, name, httpPort: 0 })
        const node = await startNode({
          dir,
          overrides: { logLevel: opts.logLevel ?? 'warn' },
          env: opts.enclaves?.[name] ? { SYNDICATE_ENCLAVE_INSTANCES: String(opts.enclaves[name]) } : {},
          logDestination: opts.logDestination,
        })
        nodes.push({ name, node, token })
      }),
    )
    nodes.sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name))
    const doc = await signedGenesis(
      nodes.map((n) => ({
        name: n.name,
        peerId: n.node.peerId.toString(),
        addresses: n.node.addresses(),
        dir: n.node.dir,
      })),
      opts.threshold,
    )
    const t1 = performance.now()
    await Promise.all(nodes.map((n) => n.node.membership.install(doc)))
    await waitForMesh(
      nodes.map((n) => n.node),
      opts.connectTimeoutMs ?? 30_000,
    )
    const timings = { startS: (t1 - t0) / 1000, meshS: (performance.now() - t1) / 1000 }
    return { nodes, document: doc, baseDir, timings, stop }
  } catch (e) {
    await stop()
    throw e
  }
}

/** Resolves when every node has a connection to every other node in `nodes`. */
export async function waitForMesh(nodes: RunningNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const missing = missingLinks(nodes)
    if (missing.length === 0) return
    if (Date.now() > deadline) {
      throw new Error(
        `mesh incomplete after ${timeoutMs} ms: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, 25))
  }
}

export function missingLinks(nodes: RunningNode[]): string[] {
  const out: string[] = []
  for (const a of nodes) {
    for (const b of nodes) {
      if (a !== b && a.host.getConnections(b.peerId).length === 0)
        out.push(`${a.config.name}→${b.config.name}`)
    }
  }
  return out
}
