import type { Libp2p, PeerId } from '@libp2p/interface'
import { z } from 'zod'
import type { LogPeer } from '../governance/witness.ts'
import { defineProtocol, requestProtocol } from './define.ts'

/**
 * Log replication between members: what a witness asks of a log's owner (latest checkpoint, consistency proof,
 * entries) and the cosigned checkpoint it hands back. The governance layer defines the semantics (LogPeer);
 * this is its wire form.
 */
const Origin = z.string().min(1).max(200)
const Size = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const Note = z
  .string()
  .min(1)
  .max(64 * 1024)
const MAX_ENTRIES = 1000

export const logProtocol = defineProtocol({
  name: 'log',
  version: '1.0.0',
  maxMessageBytes: 16 * 1024 * 1024,
  request: z.discriminatedUnion('op', [
    z.strictObject({ op: z.literal('checkpoint'), origin: Origin }),
    z.strictObject({ op: z.literal('consistency'), origin: Origin, from: Size, to: Size }),
    z.strictObject({ op: z.literal('entries'), origin: Origin, start: Size, end: Size }),
    z.strictObject({ op: z.literal('cosigned'), origin: Origin, note: Note }),
  ]),
  response: z.union([
    z.strictObject({ note: Note }),
    z.strictObject({ proof: z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(128) }),
    z.strictObject({ entries: z.array(z.string().max(16 * 1024)).max(MAX_ENTRIES) }),
    z.strictObject({ ok: z.literal(true) }),
  ]),
})

/** Answers log requests from `local` (the owner's logs). */
export async function serveLog(
  local: LogPeer,
  req: z.infer<typeof logProtocol.request>,
): Promise<z.infer<typeof logProtocol.response>> {
  switch (req.op) {
    case 'checkpoint':
      return { note: await local.latestCheckpoint(req.origin) }
    case 'consistency':
      return {
        proof: (await local.consistencyProof(req.origin, req.from, req.to)).map((h) =>
          Buffer.from(h).toString('hex'),
        ),
      }
    case 'entries':
      return {
        entries: (await local.entries(req.origin, req.start, req.end)).map((e) =>
          Buffer.from(e).toString('base64'),
        ),
      }
    case 'cosigned':
      await local.submitCosigned?.(req.origin, req.note)
      return { ok: true }
  }
}

/** A LogPeer that asks `peer` over libp2p. */
export function remoteLogPeer(host: Libp2p, peer: PeerId): LogPeer {
  const ask = (req: z.input<typeof logProtocol.request>) => requestProtocol(host, peer, logProtocol, req)
  return {
    async latestCheckpoint(origin) {
      const r = await ask({ op: 'checkpoint', origin })
      if (!('note' in r)) throw new Error('the peer answered without a checkpoint')
      return r.note
    },
    async consistencyProof(origin, from, to) {
      const r = await ask({ op: 'consistency', origin, from, to })
      if (!('proof' in r)) throw new Error('the peer answered without a proof')
      return r.proof.map((h) => Uint8Array.from(Buffer.from(h, 'hex')))
    },
    async entries(origin, start, end) {
      const r = await ask({ op: 'entries', origin, start, end })
      if (!('entries' in r)) throw new Error('the peer answered without entries')
      return r.entries.map((e) => Uint8Array.from(Buffer.from(e, 'base64')))
    },
    async submitCosigned(origin, note) {
      await ask({ op: 'cosigned', origin, note })
    },
  }
}
