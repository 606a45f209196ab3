import { z } from 'zod'
import { canonicalBytes, canonicalJson } from '../crypto/canonical.ts'
import { SyndicateError } from '../crypto/errors.ts'
import { MAX_SIGNATURE_BYTES } from './batch-sign.ts'
import { Hex32, MemberSchema, PeerIdString } from './keys.ts'

/**
 * The governance log entry, version 1. One schema for every kind of event; the body is validated per type
 * with strict schemas, so an entry can carry hashes, identifiers, decisions and metrics but no field that is
 * not listed here (raw data has nowhere to go). The leaf bytes of an entry are its canonical JSON (sorted
 * keys, no whitespace); its signature covers the canonical JSON of the entry without `signature`, prefixed
 * with ENTRY_SIGNING_PREFIX.
 */

export const ENTRY_VERSION = 1
/** Upper bound on an entry's canonical bytes: bodies are small records, never payloads. */
export const MAX_ENTRY_BYTES = 8 * 1024
export const ENTRY_SIGNING_PREFIX = 'syndicate-governance-entry/v1\n'

export const ERR_GOV_ENTRY = 'ERR_GOV_ENTRY'

const Id = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:@-]+$/, 'identifiers use letters, digits and . _ : @ -')
const Text = z.string().max(1024)
const ConsortiumId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, 'consortium ids use letters, digits and . _ -')

/** A log is named by its origin: `<consortium id>/<owner peer id>`. Checkpoints carry it as their first line. */
export const Origin = z
  .string()
  .max(200)
  .refine((s) => {
    const slash = s.indexOf('/')
    return (
      slash > 0 &&
      ConsortiumId.safeParse(s.slice(0, slash)).success &&
      PeerIdString.safeParse(s.slice(slash + 1)).success
    )
  }, 'an origin is <consortium id>/<peer id>')

export function originOf(consortiumId: string, peerId: string): string {
  const origin = `${consortiumId}/${peerId}`
  if (!Origin.safeParse(origin).success) {
    throw new SyndicateError(ERR_GOV_ENTRY, `"${origin}" is not a valid log origin (consortium id/peer id)`)
  }
  return origin
}

export function parseOrigin(origin: string): { consortiumId: string; peerId: string } {
  const slash = origin.indexOf('/')
  return { consortiumId: origin.slice(0, slash), peerId: origin.slice(slash + 1) }
}

const Metrics = z
  .record(z.string().min(1).max(64), z.number().finite())
  .refine((m) => Object.keys(m).length <= 64, 'at most 64 metrics')

/** Body schemas, one per entry type; `job` says whether the entry names a job id. */
export const ENTRY_TYPES = {
  /** A member joins (with its identity) under a consortium document whose hash is recorded. */
  'member.join': { job: 'forbidden', body: z.strictObject({ member: MemberSchema, documentHash: Hex32 }) },
  'member.leave': {
    job: 'forbidden',
    body: z.strictObject({ peerId: PeerIdString, documentHash: Hex32, reason: Text }),
  },
  /** A dataset is registered by the hash of its schema; never rows, values or column statistics. */
  'dataset.register': { job: 'forbidden', body: z.strictObject({ datasetId: Id, schemaHash: Hex32 }) },
  'job.propose': {
    job: 'required',
    body: z.strictObject({
      specHash: Hex32,
      kind: Id,
      proposer: PeerIdString,
      parties: z.array(PeerIdString).min(1).max(64),
    }),
  },
  'job.vote': {
    job: 'required',
    body: z.strictObject({
      specHash: Hex32,
      voter: PeerIdString,
      decision: z.enum(['accept', 'reject']),
      reason: Text.optional(),
    }),
  },
  'job.commit': { job: 'required', body: z.strictObject({ specHash: Hex32 }) },
  'job.start': { job: 'required', body: z.strictObject({ specHash: Hex32 }) },
  'job.result': {
    job: 'required',
    body: z.strictObject({
      specHash: Hex32,
      /** Hash of the agreed outcome, equal on every party of a consistent run. */
      resultHash: Hex32.optional(),
      modelHash: Hex32.optional(),
      metrics: Metrics,
    }),
  },
  'job.cancel': {
    job: 'required',
    body: z.strictObject({ specHash: Hex32, by: PeerIdString, reason: Text }),
  },
  'job.fail': {
    job: 'required',
    body: z.strictObject({ specHash: Hex32, party: PeerIdString.optional(), reason: Text }),
  },
  'policy.change': { job: 'forbidden', body: z.strictObject({ policyHash: Hex32, summary: Text }) },
  'privacy.spend': {
    job: 'required',
    body: z.strictObject({
      datasetId: Id,
      epsilon: z.number().finite().nonnegative(),
      delta: z.number().finite().min(0).max(1),
      remainingEpsilon: z.number().finite().optional(),
    }),
  },
  attestation: {
    job: 'optional',
    body: z.strictObject({
      enclaveId: Id,
      measurement: Hex32,
      evidenceHash: Hex32,
      verdict: z.enum(['trusted', 'rejected']),
      /** Why a rejected enclave was refused (the verifier's or appraisal's reason). */
      reason: Text.optional(),
    }),
  },
  /**
   * An enclave destroyed a job's data. The record and the enclave's signature over it are logged whole, with
   * the attested key, so an auditor can check the signature from the log alone.
   */
  'enclave.destroyed': {
    job: 'required',
    body: z.strictObject({
      record: z.strictObject({
        v: z.literal(1),
        job: Id,
        specHash: Hex32,
        instanceId: Id,
        measurement: Hex32,
        owners: z
          .array(z.strictObject({ party: Id, uploadHash: Hex32, rows: z.number().int().nonnegative() }))
          .max(64),
        destroyedAt: z.number().int().nonnegative(),
      }),
      enclaveKey: z.string().regex(/^[0-9a-f]{128}$/),
      signature: z.string().regex(/^[A-Za-z0-9+/]{86}==$/),
    }),
  },
} as const

export type EntryType = keyof typeof ENTRY_TYPES
export type BodyOf<T extends EntryType> = z.infer<(typeof ENTRY_TYPES)[T]['body']>
export const ENTRY_TYPE_NAMES = Object.keys(ENTRY_TYPES) as EntryType[]

/**
 * Ed25519 by the log owner, in hex: 64 bytes, or the batch form of governance/batch-sign.ts (the signature
 * of a group of entries' Merkle root, the entry's index in the group, the group's size and the entry's path).
 */
const EntrySignature = z
  .string()
  .max(2 * MAX_SIGNATURE_BYTES)
  .regex(
    /^[0-9a-f]{128}(?:[0-9a-f]{16}(?:[0-9a-f]{64})+)?$/,
    'expected an Ed25519 signature in lowercase hex',
  )

const EntryBase = z.strictObject({
  v: z.literal(ENTRY_VERSION),
  index: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  time: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  origin: Origin,
  type: z.enum(ENTRY_TYPE_NAMES as [EntryType, ...EntryType[]]),
  jobId: Id.optional(),
  body: z.unknown(),
  signer: MemberSchema,
  signature: EntrySignature,
})

export const EntrySchema = EntryBase.superRefine((e, ctx) => {
  const problem = bodyProblem(e.type, e.jobId, e.body)
  if (problem) ctx.addIssue({ code: 'custom', message: problem })
})

/**
 * What is wrong with an entry of `type` naming `jobId` and carrying `body` (its job id rule and its body's
 * schema), or undefined. The writer checks this alone: it builds the rest of the entry itself.
 */
export function bodyProblem(type: EntryType, jobId: string | undefined, body: unknown): string | undefined {
  const spec = ENTRY_TYPES[type]
  if (spec.job === 'required' && jobId === undefined) return `${type} needs a jobId`
  if (spec.job === 'forbidden' && jobId !== undefined) return `${type} takes no jobId`
  if (jobId !== undefined && !Id.safeParse(jobId).success)
    return `job id ${JSON.stringify(jobId)} is malformed`
  const parsed = spec.body.safeParse(body)
  if (parsed.success) return undefined
  const issue = parsed.error.issues[0]
  return `body of ${type}: ${issue.path.join('.') || '(root)'}: ${issue.message}`
}

export type LogEntry = z.infer<typeof EntryBase>
export type UnsignedEntry = Omit<LogEntry, 'signature'>

export function bodyOf<T extends EntryType>(entry: LogEntry, type: T): BodyOf<T> | undefined {
  return entry.type === type ? (entry.body as BodyOf<T>) : undefined
}

/** The leaf bytes: canonical JSON of the whole entry. */
export function encodeEntry(entry: LogEntry): Uint8Array {
  return canonicalBytes(entry)
}

/** What the signer signs: a domain-separation prefix and the canonical JSON of the entry minus its signature. */
export function entrySigningBytes(entry: UnsignedEntry | LogEntry): Uint8Array {
  const { signature: _omit, ...unsigned } = entry as LogEntry
  return Buffer.from(ENTRY_SIGNING_PREFIX + canonicalJson(unsigned), 'utf8')
}

export type EntryCheck = { ok: true; entry: LogEntry; bytes: Uint8Array } | { ok: false; reason: string }

/** Checks an entry value against the schema (fields, body, bounds), without encoding it. */
export function validateEntry(value: unknown): { ok: true; entry: LogEntry } | { ok: false; reason: string } {
  const parsed = EntrySchema.safeParse(value)
  if (parsed.success) return { ok: true, entry: parsed.data }
  const issue = parsed.error.issues[0]
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  return { ok: false, reason: `malformed entry: ${where}${issue.message}` }
}

/** Validates an untrusted entry value (schema, body, size) and returns its canonical leaf bytes. */
export function checkEntry(value: unknown): EntryCheck {
  const parsed = validateEntry(value)
  if (!parsed.ok) return parsed
  // The validated input itself (strict schemas, no transforms: the same value as parsed.data), whose key
  // order is still that of its source, so the fast path applies to entries read back from canonical bytes.
  const bytes = canonicalBytes(value)
  if (bytes.byteLength > MAX_ENTRY_BYTES) {
    return { ok: false, reason: `entry is ${bytes.byteLength} bytes, over the ${MAX_ENTRY_BYTES}-byte limit` }
  }
  return { ok: true, entry: parsed.entry, bytes }
}

/** Decodes leaf bytes; they must be exactly the canonical encoding, so every entry has one byte form. */
export function decodeEntry(bytes: Uint8Array): EntryCheck {
  if (bytes.byteLength > MAX_ENTRY_BYTES)
    return { ok: false, reason: `entry bytes exceed ${MAX_ENTRY_BYTES}` }
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (e) {
    return { ok: false, reason: `entry bytes are not JSON (${(e as Error).message})` }
  }
  const checked = checkEntry(value)
  if (!checked.ok) return checked
  if (Buffer.compare(checked.bytes, bytes) !== 0)
    return { ok: false, reason: 'entry bytes are not in canonical form' }
  return checked
}
