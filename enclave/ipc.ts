/**
 * The narrow interface between the host and an enclave process: a fixed set of operations, each with a
 * schema for its request and its result, checked on both sides of the IPC channel. Nothing else crosses: the
 * host can ask for reports, hand over ciphertexts and read outputs, never read the enclave's memory (on real
 * hardware; see docs/enclave.md for what the simulation cannot enforce).
 */
import { z } from 'zod'
import { EvidenceSchema, Hex32 } from './evidence.ts'
import { EnclaveConfigSchema } from './measurement.ts'
import { MAX_CHUNK_BOX } from './payload.ts'
import { SignedUsagePolicySchema } from './release.ts'

const Bytes = (max: number) =>
  z
    .custom<Uint8Array<ArrayBufferLike>>((v) => v instanceof Uint8Array, 'expected bytes')
    .refine((b) => b.length <= max, `at most ${max} bytes`)
const JobId = z.string().min(1).max(80)
const Party = z.string().min(1).max(64)
const PublicKey = z.string().regex(/^[0-9a-f]{128}$/)

export const LaunchSchema = z.strictObject({
  instanceId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  signer: Hex32,
  productId: z.number().int().min(0).max(65535),
  svn: z.number().int().min(0).max(65535),
  debug: z.boolean(),
  platformKey: Hex32,
  platformHost: z.string().min(40).max(80),
})

const MAX_SCORE_ROWS_BOX = 16 * 1024 * 1024

export const OPS = {
  init: {
    req: z.strictObject({ launch: LaunchSchema, config: EnclaveConfigSchema }),
    res: z.strictObject({ measurement: Hex32 }),
  },
  report: {
    req: z.strictObject({ nonce: Bytes(64), key: z.enum(['cluster', 'instance']) }),
    res: z.strictObject({ publicKey: PublicKey, reportData: Hex32 }),
  },
  'cluster.create': { req: z.strictObject({}), res: z.strictObject({ publicKey: PublicKey }) },
  'sync.nonce': { req: z.strictObject({}), res: z.strictObject({ nonce: Bytes(64) }) },
  'sync.export': {
    req: z.strictObject({ evidence: EvidenceSchema, nonce: Bytes(64) }),
    res: z.strictObject({ box: Bytes(1024) }),
  },
  'sync.import': { req: z.strictObject({ box: Bytes(1024) }), res: z.strictObject({ publicKey: PublicKey }) },
  'job.open': { req: z.strictObject({ spec: z.unknown() }), res: z.strictObject({ specHash: Hex32 }) },
  'job.upload': {
    req: z.strictObject({
      job: JobId,
      party: Party,
      policy: SignedUsagePolicySchema,
      wrappedKey: Bytes(1024),
      chunks: z.number().int().min(1).max(1_000_000),
    }),
    res: z.strictObject({}),
  },
  'job.chunk': {
    req: z.strictObject({
      job: JobId,
      party: Party,
      index: z.number().int().min(0),
      box: Bytes(MAX_CHUNK_BOX),
    }),
    res: z.strictObject({}),
  },
  'job.run': {
    req: z.strictObject({ job: JobId }),
    res: z.strictObject({
      metrics: z.record(z.string(), z.number()),
      modelHash: Hex32,
      models: z.record(Party, Bytes(256 * 1024 * 1024)),
      sealedModel: Bytes(256 * 1024 * 1024),
      destroyed: z.strictObject({
        record: z.strictObject({
          v: z.literal(1),
          job: JobId,
          specHash: Hex32,
          instanceId: z.string(),
          measurement: Hex32,
          owners: z.array(z.strictObject({ party: Party, uploadHash: Hex32, rows: z.number().int() })),
          destroyedAt: z.number().int(),
        }),
        signature: z.string(),
      }),
    }),
  },
  'job.drop': { req: z.strictObject({ job: JobId }), res: z.strictObject({}) },
  'model.load': {
    req: z.strictObject({ job: JobId, sealed: Bytes(256 * 1024 * 1024) }),
    res: z.strictObject({}),
  },
  score: {
    req: z.strictObject({
      job: JobId,
      session: z.string().min(1).max(200),
      requester: Party,
      rows: z.record(Party, Bytes(MAX_SCORE_ROWS_BOX)),
    }),
    res: z.strictObject({ box: Bytes(MAX_SCORE_ROWS_BOX) }),
  },
  inventory: {
    req: z.strictObject({}),
    res: z.strictObject({
      jobs: z.number().int(),
      uploads: z.number().int(),
      ciphertextBytes: z.number().int(),
      dataKeys: z.number().int(),
      plaintextRows: z.number().int(),
      models: z.number().int(),
    }),
  },
  /**
   * Diagnostics builds only: which strings of the enclave's heap (after a full GC) have one of these SHA-256
   * hashes. Hashes, so that the probe does not itself put the strings it looks for into the heap.
   */
  probe: {
    req: z.strictObject({ sha256: z.array(Hex32).max(100) }),
    res: z.strictObject({ found: z.array(Hex32) }),
  },
} as const

export type Op = keyof typeof OPS
export type OpRequest<O extends Op> = z.infer<(typeof OPS)[O]['req']>
export type OpResult<O extends Op> = z.infer<(typeof OPS)[O]['res']>

export const RequestEnvelope = z.strictObject({
  id: z.number().int().nonnegative(),
  op: z.enum(Object.keys(OPS) as [Op, ...Op[]]),
  args: z.unknown(),
})

export const ReplyEnvelope = z.union([
  z.strictObject({ id: z.number().int(), ok: z.literal(true), result: z.unknown() }),
  z.strictObject({
    id: z.number().int(),
    ok: z.literal(false),
    error: z.strictObject({
      code: z.string().max(64),
      message: z.string().max(4000),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  }),
  z.strictObject({ event: z.literal('progress'), job: JobId, phase: z.string().max(500) }),
  z.strictObject({ event: z.literal('ready') }),
])
export type Reply = z.infer<typeof ReplyEnvelope>
