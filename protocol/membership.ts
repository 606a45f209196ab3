import { z } from 'zod'
import { ConsortiumDocumentSchema } from './consortium.ts'
import { defineProtocol } from './define.ts'

/**
 * Consortium document sync: a member asks a peer for every document version after the one it holds, and
 * installs those that chain. This is how a membership change signed by the threshold reaches every node.
 */
export const MAX_SYNC_VERSIONS = 16

export const consortiumSyncProtocol = defineProtocol({
  name: 'consortium',
  version: '1.0.0',
  maxMessageBytes: 4 * 1024 * 1024,
  request: z.object({ id: z.string().max(64), have: z.number().int().min(0) }).strict(),
  response: z.object({ documents: z.array(ConsortiumDocumentSchema).max(MAX_SYNC_VERSIONS) }).strict(),
})

/** A cheap liveness and version probe between members. */
export const statusProtocol = defineProtocol({
  name: 'status',
  version: '1.0.0',
  maxMessageBytes: 16 * 1024,
  request: z.object({ consortiumVersion: z.number().int().min(0) }).strict(),
  response: z
    .object({
      name: z.string().max(64),
      software: z.string().max(64),
      consortiumVersion: z.number().int().min(0),
      time: z.string().max(40),
    })
    .strict(),
})
