import type { PeerId, PrivateKey } from '@libp2p/interface'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { canonicalBytes } from '../crypto/canonical.ts'
import { ProtocolError, ProtocolErrorCode } from './errors.ts'
import { signValue, verifyValue } from './signing.ts'

/**
 * The consortium document: who the members are, where to reach them, and how many of them must sign a change.
 * Version 1 (genesis) is signed by every founding member; version k+1 names the hash of version k and needs
 * the signatures of at least `threshold` members of version k. A node installs only a document that chains to
 * the one it holds, so a member cannot be added or removed without the consortium's agreement.
 */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const HEX64 = /^[0-9a-f]{64}$/

export const MemberSchema = z.object({
  name: z.string().regex(NAME, 'a member name is 1-64 letters, digits, dot, dash or underscore'),
  peerId: z.string().min(40).max(80),
  roles: z.array(z.string().regex(NAME)).max(16).default([]),
  addresses: z.array(z.string().max(256)).max(16).default([]),
})
export type Member = z.infer<typeof MemberSchema>

export const ConsortiumBodySchema = z
  .object({
    v: z.literal(1),
    id: z.string().regex(NAME),
    name: z.string().min(1).max(128),
    version: z.number().int().min(1),
    previous: z.string().regex(HEX64).nullable(),
    threshold: z.number().int().min(1),
    members: z.array(MemberSchema).min(1).max(512),
    createdAt: z.string().datetime(),
  })
  .superRefine((b, ctx) => {
    if (b.threshold > b.members.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['threshold'],
        message: `threshold ${b.threshold} exceeds ${b.members.length} members`,
      })
    }
    if ((b.version === 1) !== (b.previous === null)) {
      ctx.addIssue({ code: 'custom', path: ['previous'], message: 'only version 1 has no previous document' })
    }
    for (const key of ['name', 'peerId'] as const) {
      const seen = new Set<string>()
      for (const m of b.members) {
        if (seen.has(m[key]))
          ctx.addIssue({ code: 'custom', path: ['members'], message: `duplicate member ${key} ${m[key]}` })
        seen.add(m[key])
      }
    }
  })
export type ConsortiumBody = z.infer<typeof ConsortiumBodySchema>

export const SignatureSchema = z.object({
  peerId: z.string().min(40).max(80),
  signature: z.string().regex(/^[A-Za-z0-9+/=]{1,200}$/),
})

export const ConsortiumDocumentSchema = z.object({
  body: ConsortiumBodySchema,
  signatures: z.array(SignatureSchema).max(512),
})
export type ConsortiumDocument = z.infer<typeof ConsortiumDocumentSchema>

const DOMAIN = 'consortium/v1'

export function documentHash(body: ConsortiumBody): string {
  return bytesToHex(sha256(canonicalBytes(body)))
}

export function parseConsortiumDocument(json: unknown): ConsortiumDocument {
  const r = ConsortiumDocumentSchema.safeParse(json)
  if (!r.success) {
    const i = r.error.issues[0]
    throw new ProtocolError(
      ProtocolErrorCode.INVALID_CONSORTIUM,
      `consortium document invalid at ${i?.path.join('.') || '(root)'}: ${i?.message}`,
    )
  }
  return r.data
}

export function newGenesis(opts: {
  id: string
  name: string
  members: Member[]
  threshold?: number
}): ConsortiumDocument {
  const body = ConsortiumBodySchema.parse({
    v: 1,
    id: opts.id,
    name: opts.name,
    version: 1,
    previous: null,
    threshold: opts.threshold ?? Math.floor(opts.members.length / 2) + 1,
    members: opts.members,
    createdAt: new Date().toISOString(),
  })
  return { body, signatures: [] }
}

/** The successor of `current` with `members`; it needs `current.body.threshold` signatures to install. */
export function nextVersion(
  current: ConsortiumDocument,
  changes: { members: Member[]; threshold?: number },
): ConsortiumDocument {
  const body = ConsortiumBodySchema.parse({
    ...current.body,
    version: current.body.version + 1,
    previous: documentHash(current.body),
    members: changes.members,
    threshold: Math.min(changes.threshold ?? current.body.threshold, changes.members.length),
    createdAt: new Date().toISOString(),
  })
  return { body, signatures: [] }
}

export async function signDocument(
  doc: ConsortiumDocument,
  key: PrivateKey,
  peerId: PeerId,
): Promise<ConsortiumDocument> {
  const signature = await signValue(DOMAIN, doc.body, key)
  const others = doc.signatures.filter((s) => s.peerId !== peerId.toString())
  return { body: doc.body, signatures: [...others, { peerId: peerId.toString(), signature }] }
}

/** Peer ids whose signatures on `doc` are valid (unknown, duplicate or bad signatures are ignored). */
async function validSigners(doc: ConsortiumDocument): Promise<Set<string>> {
  const ok = new Set<string>()
  for (const s of doc.signatures) {
    if (!ok.has(s.peerId) && (await verifyValue(DOMAIN, doc.body, s.peerId, s.signature))) ok.add(s.peerId)
  }
  return ok
}

export interface Verification {
  ok: boolean
  /** Members whose signature is still needed (genesis) or how many more are needed (successor). */
  missing: string[]
  needed: number
  reason?: string
}

/**
 * Checks `doc` on its own (genesis) or as the successor of `previous`. Returns what is missing rather than
 * throwing, so `consortium sign` can tell an operator who still has to sign.
 */
export async function verifyDocument(
  doc: ConsortiumDocument,
  previous?: ConsortiumDocument,
): Promise<Verification> {
  const signers = await validSigners(doc)
  if (doc.body.version === 1) {
    if (previous)
      return {
        ok: false,
        missing: [],
        needed: 0,
        reason: 'a genesis document cannot replace an installed consortium',
      }
    const missing = doc.body.members.filter((m) => !signers.has(m.peerId)).map((m) => m.name)
    return { ok: missing.length === 0, missing, needed: missing.length }
  }
  if (!previous)
    return {
      ok: false,
      missing: [],
      needed: 0,
      reason: `version ${doc.body.version} needs its predecessor installed first`,
    }
  if (doc.body.id !== previous.body.id)
    return { ok: false, missing: [], needed: 0, reason: 'consortium id differs from the installed one' }
  if (doc.body.version !== previous.body.version + 1 || doc.body.previous !== documentHash(previous.body)) {
    return {
      ok: false,
      missing: [],
      needed: 0,
      reason: `does not chain to installed version ${previous.body.version}`,
    }
  }
  const voters = previous.body.members.filter((m) => signers.has(m.peerId))
  const needed = Math.max(0, previous.body.threshold - voters.length)
  const missing = previous.body.members.filter((m) => !signers.has(m.peerId)).map((m) => m.name)
  return { ok: needed === 0, missing, needed }
}

export async function assertInstallable(
  doc: ConsortiumDocument,
  previous?: ConsortiumDocument,
): Promise<void> {
  const v = await verifyDocument(doc, previous)
  if (!v.ok) {
    throw new ProtocolError(
      ProtocolErrorCode.INVALID_CONSORTIUM,
      v.reason ??
        `consortium document lacks signatures: ${v.needed} more needed (unsigned: ${v.missing.join(', ')})`,
      { missing: v.missing, needed: v.needed },
    )
  }
}

export function findMember(doc: ConsortiumDocument | undefined, peerId: string): Member | undefined {
  return doc?.body.members.find((m) => m.peerId === peerId)
}
