/**
 * Key release. Each data owner signs a usage policy — this job (by spec hash), its columns, the algorithms it
 * allows, who may receive the model and its scores, the enclave build it attested — and wraps its data key to
 * the attested enclave with the policy's hash as associated data, so the key cannot be moved under another
 * policy. The enclave unwraps no key until every owner's policy admits the job; one refusal releases nothing.
 */

import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { canonicalBytes, signingBytes } from '../crypto/canonical.ts'
import { SyndicateError } from '../crypto/errors.ts'
import { Hex32 } from './evidence.ts'

export const TEE_ALGORITHMS = ['lr', 'gbdt', 'mlp'] as const
export type TeeAlgorithm = (typeof TEE_ALGORITHMS)[number]

const Name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)
const PeerIdStr = z.string().min(40).max(80)

export const UsagePolicyBodySchema = z.strictObject({
  v: z.literal(1),
  job: z.string().min(1).max(80),
  specHash: Hex32,
  /** The owner's peer id (its Ed25519 identity signs the policy) and its party name in the job. */
  owner: PeerIdStr,
  party: Name,
  /** Columns of the owner's rows the enclave may use. */
  columns: z.array(z.string().min(1).max(128)).max(4096),
  algorithms: z.array(z.string().min(1).max(64)).min(1).max(16),
  /** Parties that may receive the trained model and the scores it computes. */
  recipients: z.array(Name).max(64),
  /** X25519 public key (hex) the model and scores are sealed to, if this owner is a recipient. */
  replyKey: Hex32,
  /** The enclave build the owner attested. */
  measurement: Hex32,
  /** Epoch milliseconds after which the key must not be used. */
  notAfter: z.number().int().nonnegative(),
})
export type UsagePolicy = z.infer<typeof UsagePolicyBodySchema>
export const SignedUsagePolicySchema = z.strictObject({
  policy: UsagePolicyBodySchema,
  signature: z.string().regex(/^[A-Za-z0-9+/]{86}==$/),
})
export type SignedUsagePolicy = z.infer<typeof SignedUsagePolicySchema>

function policyBytes(p: UsagePolicy): Uint8Array {
  return signingBytes('enclave/usage-policy/v1', p)
}

/** The associated data a data key is wrapped under: the hash of the policy it is released by. */
export function policyHash(p: UsagePolicy): Uint8Array {
  return sha256(canonicalBytes(p))
}

export async function signUsagePolicy(p: UsagePolicy, key: PrivateKey): Promise<SignedUsagePolicy> {
  return { policy: p, signature: Buffer.from(await key.sign(policyBytes(p))).toString('base64') }
}

export async function usagePolicySigned(s: SignedUsagePolicy): Promise<boolean> {
  try {
    const pk = peerIdFromString(s.policy.owner).publicKey
    return pk !== undefined && (await pk.verify(policyBytes(s.policy), Buffer.from(s.signature, 'base64')))
  } catch {
    return false
  }
}

/** The enclave's view of a committed job spec: it hashes the whole spec and reads only these fields. */
export const TeeSpecSchema = z.looseObject({
  id: z.string().min(1).max(80),
  kind: z.literal('train'),
  mode: z.literal('tee'),
  algorithm: z.enum(TEE_ALGORITHMS),
  params: z.record(z.string(), z.unknown()),
  parties: z
    .array(
      z.looseObject({
        name: Name,
        peerId: PeerIdStr,
        roles: z.array(z.string()),
        dataset: z.string().optional(),
        columns: z.array(z.string()).optional(),
      }),
    )
    .min(2)
    .max(64),
  outputs: z.array(z.looseObject({ what: z.string(), to: z.array(Name) })),
})
export type TeeSpec = z.infer<typeof TeeSpecSchema>

export function specHashOf(spec: unknown): string {
  return bytesToHex(sha256(canonicalBytes(spec)))
}

export function dataOwners(spec: TeeSpec): TeeSpec['parties'] {
  return spec.parties.filter((p) => p.dataset !== undefined)
}

export function labelHolder(spec: TeeSpec): string | undefined {
  return spec.parties.find((p) => p.roles.includes('label-holder'))?.name
}

/** Who receives the model (and may ask for scores): the spec's `model` outputs. */
export function modelRecipients(spec: TeeSpec): string[] {
  return [...new Set(spec.outputs.filter((o) => o.what === 'model').flatMap((o) => o.to))]
}

export class KeyReleaseError extends SyndicateError {
  constructor(party: string, reason: string) {
    super('ERR_KEY_RELEASE', `no key released: the usage policy of ${party} ${reason}`, { party })
  }
}

/**
 * Throws a KeyReleaseError naming the first owner whose policy does not admit the job. Signatures are checked
 * separately (`usagePolicySigned`); `columns` are what each owner actually uploaded, when known.
 */
export function admitJob(
  spec: TeeSpec,
  specHash: string,
  policies: ReadonlyMap<string, UsagePolicy>,
  measurement: string,
  now: number,
  columns?: ReadonlyMap<string, string[]>,
): void {
  const recipients = modelRecipients(spec)
  for (const owner of dataOwners(spec)) {
    const p = policies.get(owner.name)
    if (!p) throw new KeyReleaseError(owner.name, 'is missing')
    if (p.owner !== owner.peerId || p.party !== owner.name)
      throw new KeyReleaseError(owner.name, 'was signed by another member')
    if (p.job !== spec.id || p.specHash !== specHash)
      throw new KeyReleaseError(owner.name, `was given for another job or spec (${p.job})`)
    if (p.measurement !== measurement)
      throw new KeyReleaseError(owner.name, 'names another enclave build than this one')
    if (now > p.notAfter) throw new KeyReleaseError(owner.name, 'has expired')
    if (!p.algorithms.includes(spec.algorithm))
      throw new KeyReleaseError(
        owner.name,
        `does not admit algorithm ${spec.algorithm} (it allows ${p.algorithms.join(', ')})`,
      )
    const extra = recipients.filter((r) => !p.recipients.includes(r))
    if (extra.length)
      throw new KeyReleaseError(
        owner.name,
        `does not let ${extra.join(', ')} receive the model (it allows ${p.recipients.join(', ') || 'nobody'})`,
      )
    const used = columns?.get(owner.name) ?? owner.columns ?? []
    const unreleased = used.filter((c) => !p.columns.includes(c))
    if (unreleased.length)
      throw new KeyReleaseError(owner.name, `does not release column(s) ${unreleased.slice(0, 5).join(', ')}`)
  }
}
