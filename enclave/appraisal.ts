/**
 * Appraisal policy: which verified claims a party accepts. Separate from verification so that each member sets
 * its own bar (RATS "appraisal policy for evidence"): allowed measurements and signers, the product, a minimum
 * security version, and debug enclaves refused unless explicitly allowed.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { DEFAULT_ENCLAVE_CONFIG, measure } from './measurement.ts'
import { AttestationError, type Claims } from './verifier.ts'

/** Stand-in for MRSIGNER: the hash of the release key that signs Syndicate's enclave bundle. */
export const SYNDICATE_SIGNER = bytesToHex(
  sha256(new TextEncoder().encode('syndicate/enclave/release-key/v1')),
)
export const SYNDICATE_PRODUCT_ID = 1
export const SYNDICATE_SVN = 1

const Hex32 = z.string().regex(/^[0-9a-f]{64}$/)

export const AppraisalPolicySchema = z.strictObject({
  /** Accepted measurements; 'self' = the measurement of this installation's enclave bundle and default config. */
  measurements: z
    .array(z.union([z.literal('self'), Hex32]))
    .min(1)
    .default(['self']),
  signers: z.array(Hex32).min(1).default([SYNDICATE_SIGNER]),
  productId: z.number().int().min(0).default(SYNDICATE_PRODUCT_ID),
  minSvn: z.number().int().min(0).default(SYNDICATE_SVN),
  allowDebug: z.boolean().default(false),
})
export type AppraisalPolicy = z.infer<typeof AppraisalPolicySchema>

export const DEFAULT_APPRAISAL: AppraisalPolicy = AppraisalPolicySchema.parse({})

function allowedMeasurements(policy: AppraisalPolicy): string[] {
  return policy.measurements.map((m) => (m === 'self' ? measure(DEFAULT_ENCLAVE_CONFIG) : m))
}

/** Throws an AttestationError naming the first claim the policy refuses. */
export function appraise(claims: Claims, policy: AppraisalPolicy): void {
  const allowed = allowedMeasurements(policy)
  if (!allowed.includes(claims.measurement))
    throw new AttestationError(
      'measurement',
      `measurement ${claims.measurement.slice(0, 16)}… is not an allowed enclave build (allowed: ${allowed.map((m) => `${m.slice(0, 16)}…`).join(', ')})`,
    )
  if (!policy.signers.includes(claims.signer))
    throw new AttestationError('signer', `enclave signer ${claims.signer.slice(0, 16)}… is not trusted`)
  if (claims.productId !== policy.productId)
    throw new AttestationError(
      'product',
      `product id ${claims.productId} is not the expected ${policy.productId}`,
    )
  if (claims.svn < policy.minSvn)
    throw new AttestationError(
      'svn',
      `security version ${claims.svn} is below the minimum ${policy.minSvn}: the enclave lacks security fixes`,
    )
  if (claims.debug && !policy.allowDebug)
    throw new AttestationError(
      'debug',
      'the enclave runs in debug mode: its host can read its memory, so it is refused',
    )
}
