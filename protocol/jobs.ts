import { hash } from 'node:crypto'
import { z } from 'zod'
import { canonicalBytes } from '../crypto/canonical.ts'
import { defineProtocol } from './define.ts'
import { Base64Signature } from './signing.ts'

/**
 * Jobs: the spec every party approves, and the signed messages that move a job through its lifecycle.
 * Declared once here; the node's job service is their only producer and consumer.
 *
 * proposed → awaiting_approval → committed → running → succeeded | failed | cancelled | rejected | expired
 */
export const JOB_KINDS = [
  'psi',
  'train',
  'evaluate',
  'score',
  'retrain',
  'membership',
  'policy',
  'noop',
] as const
export const PRIVACY_MODES = ['mpc', 'he', 'tee', 'hfl', 'local'] as const
export const PARTY_ROLES = [
  'proposer',
  'label-holder',
  'feature-holder',
  'aggregator',
  'dealer',
  'recipient',
  'observer',
  'enclave-host',
] as const
export const OUTPUT_KINDS = [
  'model',
  'model-part',
  'metrics',
  'intersection-size',
  'intersection',
  'scores',
  'document',
] as const
export const JOB_STATES = [
  'proposed',
  'awaiting_approval',
  'committed',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'rejected',
  'expired',
] as const
export const TERMINAL_STATES = ['succeeded', 'failed', 'cancelled', 'rejected', 'expired'] as const
export type JobKind = (typeof JOB_KINDS)[number]
export type JobState = (typeof JOB_STATES)[number]

export function isTerminal(state: JobState): boolean {
  return (TERMINAL_STATES as readonly string[]).includes(state)
}

const Name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)
const PeerIdStr = z.string().min(40).max(80)
const Hex64 = z.string().regex(/^[0-9a-f]{64}$/)
export const JobId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{2,79}$/, 'a job id is 3-80 letters, digits, dot, dash or underscore')
const Signature = z.string().regex(Base64Signature, 'an Ed25519 signature (plain or batch form) in base64')
const Reason = z.string().max(1000)

/**
 * Every object schema below lists its members in sorted order: zod outputs them in the order of the shape, so a
 * parsed spec or message is already in canonical order and hashing or checking its signature encodes it with
 * the native JSON.stringify (crypto/canonical.ts).
 */
export const PartySchema = z.strictObject({
  columns: z.array(z.string().min(1).max(128)).max(4096).optional(),
  dataset: Name.optional(),
  name: Name,
  peerId: PeerIdStr,
  roles: z.array(z.enum(PARTY_ROLES)).min(1).max(8),
})

export const OutputSchema = z.strictObject({
  to: z.array(Name).min(1).max(64),
  what: z.enum(OUTPUT_KINDS),
})

export const JobSpecSchema = z
  .strictObject({
    algorithm: z.string().min(1).max(64),
    createdAt: z.iso.datetime(),
    deadline: z.iso.datetime(),
    id: JobId,
    kind: z.enum(JOB_KINDS),
    mode: z.enum(PRIVACY_MODES),
    outputs: z.array(OutputSchema).max(32).default([]),
    params: z.record(z.string().max(64), z.json()).default({}),
    parties: z.array(PartySchema).min(1).max(64),
    proposer: PeerIdStr,
    v: z.literal(1),
  })
  .superRefine((s, ctx) => {
    const names = new Set(s.parties.map((p) => p.name))
    if (names.size !== s.parties.length)
      ctx.addIssue({ code: 'custom', path: ['parties'], message: 'party names must be unique' })
    if (new Set(s.parties.map((p) => p.peerId)).size !== s.parties.length) {
      ctx.addIssue({ code: 'custom', path: ['parties'], message: 'a peer can appear only once' })
    }
    if (!s.parties.some((p) => p.peerId === s.proposer))
      ctx.addIssue({ code: 'custom', path: ['proposer'], message: 'the proposer must be a party' })
    for (const [i, o] of s.outputs.entries()) {
      for (const r of o.to)
        if (!names.has(r))
          ctx.addIssue({
            code: 'custom',
            path: ['outputs', i, 'to'],
            message: `recipient ${r} is not a party`,
          })
    }
    if (Date.parse(s.deadline) <= Date.parse(s.createdAt))
      ctx.addIssue({ code: 'custom', path: ['deadline'], message: 'deadline must be after createdAt' })
  })
export type JobSpec = z.infer<typeof JobSpecSchema>

/** What an operator writes: the node fills in its own identity, peer ids, timestamps and a default id. */
export const JobDraftSchema = z.strictObject({
  id: JobId.optional(),
  kind: z.enum(JOB_KINDS),
  parties: z
    .array(PartySchema.omit({ peerId: true }).extend({ peerId: PeerIdStr.optional() }))
    .min(1)
    .max(64),
  mode: z.enum(PRIVACY_MODES).default('local'),
  algorithm: z.string().min(1).max(64).default('default'),
  params: z.record(z.string().max(64), z.json()).default({}),
  outputs: z.array(OutputSchema).max(32).default([]),
  deadline: z.iso.datetime().optional(),
  /** Alternative to `deadline`: seconds from now. */
  timeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .optional(),
})
export type JobDraft = z.input<typeof JobDraftSchema>

export function specHash(spec: JobSpec): string {
  return hash('sha256', canonicalBytes(spec), 'hex')
}

/** Signature domains: one per message kind. */
export const Domains = {
  proposal: 'job/proposal/v1',
  vote: 'job/vote/v1',
  commit: 'job/commit/v1',
  cancel: 'job/cancel/v1',
  outcome: 'job/outcome/v1',
} as const

export const ProposalSchema = z.strictObject({ spec: JobSpecSchema, signature: Signature })
export type Proposal = z.infer<typeof ProposalSchema>

const VoteBody = z.strictObject({
  decision: z.enum(['accept', 'reject']),
  jobId: JobId,
  reason: Reason.optional(),
  specHash: Hex64,
  voter: PeerIdStr,
})
export const VoteSchema = signedSchema(VoteBody)
export type Vote = z.infer<typeof VoteSchema>
export type VoteBody = z.infer<typeof VoteBody>

/** The commit carries every party's accepting vote; a party runs nothing before it holds a valid commit. */
const CommitBody = z.strictObject({
  jobId: JobId,
  specHash: Hex64,
  votes: z.array(VoteSchema).min(1).max(64),
})
export const CommitSchema = signedSchema(CommitBody)
export type Commit = z.infer<typeof CommitSchema>
export type CommitBody = z.infer<typeof CommitBody>

const CancelBody = z.strictObject({ by: PeerIdStr, jobId: JobId, reason: Reason, specHash: Hex64 })
export const CancelSchema = signedSchema(CancelBody)
export type Cancel = z.infer<typeof CancelSchema>
export type CancelBody = z.infer<typeof CancelBody>

/** A party's terminal state as it saw it; `rejected` comes from the proposer once any party said no. */
const OutcomeBody = z.strictObject({
  jobId: JobId,
  party: PeerIdStr,
  reason: Reason.optional(),
  resultHash: Hex64.optional(),
  specHash: Hex64,
  state: z.enum(TERMINAL_STATES),
})
export const OutcomeSchema = signedSchema(OutcomeBody)

/** `body` and its `signature`, members still in sorted order. */
function signedSchema<T extends z.ZodRawShape>(body: z.ZodObject<T>) {
  const shape = { ...body.shape, signature: Signature }
  return z.strictObject(
    Object.fromEntries(Object.entries(shape).sort(([a], [b]) => (a < b ? -1 : 1))) as typeof shape,
  )
}
export type Outcome = z.infer<typeof OutcomeSchema>
export type OutcomeBody = z.infer<typeof OutcomeBody>

export function unsigned<T extends { signature: string }>(v: T): Omit<T, 'signature'> {
  const { signature: _s, ...rest } = v
  return rest
}

export const JobMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('propose'), proposal: ProposalSchema }),
  z.strictObject({ type: z.literal('vote'), vote: VoteSchema }),
  z.strictObject({ type: z.literal('commit'), commit: CommitSchema }),
  z.strictObject({ type: z.literal('cancel'), cancel: CancelSchema }),
  z.strictObject({ type: z.literal('outcome'), outcome: OutcomeSchema }),
])
export type JobMessage = z.infer<typeof JobMessageSchema>

export const jobsProtocol = defineProtocol({
  name: 'jobs',
  // 2.0.0: multiplexed (one long-lived stream per peer pair; 1.0.0 opened a stream per message).
  version: '2.0.0',
  maxMessageBytes: 1024 * 1024,
  // Many jobs negotiate at once: their messages share one stream per peer, up to this many in flight.
  maxStreams: 1024,
  multiplexed: true,
  // The job service sends only messages built from validated specs and its own signatures.
  checkOutgoing: false,
  request: JobMessageSchema,
  response: z.strictObject({ ok: z.literal(true), state: z.enum(JOB_STATES).optional() }),
})
