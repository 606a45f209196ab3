/**
 * Messages of a `tee` job between the data owners and the enclave host, over the job's party channel.
 * Declared once here, validated on receipt and bounded in size.
 *
 *   owner → host   tee/attest        32-byte nonce
 *   host → owner   tee/evidence      Evidence (JSON)
 *   owner → host   tee/upload        UploadHeader (JSON), then tee/chunk/<i> (encrypted chunks, bytes)
 *   host → owner   tee/result        Result (JSON): metrics, model hash, the model if sealed to this owner,
 *                                    the enclave's signed "destroyed" record
 * Scoring (session of a federated scoring request):
 *   owner → host   tee-score/rows    the owner's columns of the customers, sealed to the cluster key
 *   host → asker   tee-score/scores  probabilities sealed to the asker's reply key
 */
import { z } from 'zod'
import { Hex32 } from './evidence.ts'
import { SignedUsagePolicySchema } from './release.ts'

const Base64 = (maxBytes: number) =>
  z
    .string()
    .max(Math.ceil(maxBytes / 3) * 4 + 4)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/)

export const Tags = {
  attest: 'tee/attest',
  evidence: 'tee/evidence',
  upload: 'tee/upload',
  chunk: (i: number) => `tee/chunk/${i}`,
  result: 'tee/result',
  scoreRows: 'tee-score/rows',
  scores: 'tee-score/scores',
} as const

export const UploadHeaderSchema = z.strictObject({
  policy: SignedUsagePolicySchema,
  wrappedKey: Base64(1024),
  chunks: z.number().int().min(1).max(100_000),
})
export type UploadHeader = z.infer<typeof UploadHeaderSchema>

export const ResultSchema = z.strictObject({
  metrics: z.record(z.string().max(64), z.number()),
  modelHash: Hex32,
  /** Present only for a model recipient: the model sealed to its reply key. */
  model: Base64(64 * 1024 * 1024).optional(),
  destroyed: z.strictObject({
    record: z.strictObject({
      v: z.literal(1),
      job: z.string().max(80),
      specHash: Hex32,
      instanceId: z.string().max(64),
      measurement: Hex32,
      owners: z
        .array(z.strictObject({ party: z.string().max(64), uploadHash: Hex32, rows: z.number().int() }))
        .max(64),
      destroyedAt: z.number().int(),
    }),
    signature: z.string().regex(/^[A-Za-z0-9+/]{86}==$/),
  }),
})
export type Result = z.infer<typeof ResultSchema>
