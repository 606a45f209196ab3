import { z } from 'zod'
import { defineProtocol } from './define.ts'
import { JobId } from './jobs.ts'

/**
 * Federated scoring: the label holder of a jointly trained, split model asks the other parties to take part in
 * scoring some customers. Each party looks up its own columns of those customers and runs its half of the
 * model's joint prediction in session `session`; only the label holder gets scores.
 */
export const MAX_SCORE_IDS = 1000

export const scoringProtocol = defineProtocol({
  name: 'score',
  version: '1.0.0',
  maxMessageBytes: 256 * 1024,
  maxStreams: 256,
  timeoutMs: 30_000,
  request: z.strictObject({
    jobId: JobId,
    session: z.string().min(1).max(200),
    ids: z.array(z.string().min(1).max(128)).min(1).max(MAX_SCORE_IDS),
  }),
  response: z.strictObject({ ok: z.literal(true) }),
})
