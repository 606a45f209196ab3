/**
 * Verification of attestation evidence, separate from appraisal (enclave/appraisal.ts): the verifier checks
 * that evidence is authentic and fresh — signed by a platform that the named host certified, bound to this
 * verifier's nonce — and returns the claims; the appraisal policy then decides whether those claims are good
 * enough. `Verifier` is the seam where an SGX DCAP or TDX quote verifier replaces the simulated one.
 */
import { randomBytes } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { ed25519 } from '@noble/curves/ed25519.js'
import { hexToBytes } from '@noble/hashes/utils.js'
import { SyndicateError } from '../crypto/errors.ts'
import {
  type Evidence,
  EvidenceSchema,
  evidenceSigningBytes,
  NONCE_BYTES,
  platformCertBytes,
  reportData,
} from './evidence.ts'

/** Which check refused the evidence; `policy` checks live in appraisal.ts. */
export type AttestationCheck =
  | 'format'
  | 'platform'
  | 'signature'
  | 'binding'
  | 'nonce'
  | 'stale'
  | 'measurement'
  | 'signer'
  | 'product'
  | 'svn'
  | 'debug'

export class AttestationError extends SyndicateError {
  readonly check: AttestationCheck
  constructor(check: AttestationCheck, message: string) {
    super('ERR_ATTESTATION', message, { check })
    this.check = check
  }
}

/** The claims of verified evidence: what appraisal looks at, and the keys the verifier may now trust. */
export type Claims = Omit<Evidence, 'signature'>

export interface Verifier {
  /** Authentic evidence bound to `nonce` (from `expectHost`'s platform when given) → its claims; else throws. */
  verify(evidence: unknown, nonce: Uint8Array, expectHost?: string): Promise<Claims>
}

/**
 * Nonces a verifier hands out: single use and short-lived, so evidence can neither be replayed (its nonce is
 * spent or was never issued here) nor be old (the nonce expired before the evidence came back).
 */
export class NonceBook {
  private readonly issued = new Map<string, number>()
  private readonly maxAgeMs: number
  private readonly now: () => number

  constructor(opts: { maxAgeMs?: number; now?: () => number } = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? 60_000
    this.now = opts.now ?? Date.now
  }

  issue(): Uint8Array {
    const t = this.now()
    for (const [k, at] of this.issued) if (t - at > this.maxAgeMs) this.issued.delete(k)
    const nonce = new Uint8Array(randomBytes(NONCE_BYTES))
    this.issued.set(Buffer.from(nonce).toString('hex'), t)
    return nonce
  }

  /** Spends `nonce`; throws if it was not issued here, was already spent, or is older than the limit. */
  spend(nonce: Uint8Array): void {
    const k = Buffer.from(nonce).toString('hex')
    const at = this.issued.get(k)
    this.issued.delete(k)
    if (at === undefined)
      throw new AttestationError('nonce', 'the nonce was not issued by this verifier or was already used')
    const age = this.now() - at
    if (age > this.maxAgeMs)
      throw new AttestationError(
        'stale',
        `stale nonce: issued ${Math.round(age / 1000)} s ago, evidence must come back within ${Math.round(this.maxAgeMs / 1000)} s`,
      )
  }
}

export class SimVerifier implements Verifier {
  async verify(raw: unknown, nonce: Uint8Array, expectHost?: string): Promise<Claims> {
    const parsed = EvidenceSchema.safeParse(raw)
    if (!parsed.success)
      throw new AttestationError(
        'format',
        `malformed evidence: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`,
      )
    const { signature, ...body } = parsed.data
    if (expectHost !== undefined && body.platform.host !== expectHost)
      throw new AttestationError(
        'platform',
        `the evidence comes from a platform of ${body.platform.host}, not of the enclave host ${expectHost}`,
      )
    let certified = false
    try {
      const hostKey = peerIdFromString(body.platform.host).publicKey
      certified =
        hostKey !== undefined &&
        (await hostKey.verify(
          platformCertBytes(body.platform.key),
          Buffer.from(body.platform.cert, 'base64'),
        ))
    } catch {
      certified = false
    }
    if (!certified)
      throw new AttestationError('platform', 'the platform key is not certified by the member it names')
    let signed = false
    try {
      signed = ed25519.verify(
        Buffer.from(signature, 'base64'),
        evidenceSigningBytes(body),
        hexToBytes(body.platform.key),
      )
    } catch {
      signed = false
    }
    if (!signed)
      throw new AttestationError('signature', 'the evidence signature is invalid (altered evidence)')
    if (body.reportData !== reportData(hexToBytes(body.publicKey), nonce))
      throw new AttestationError(
        'binding',
        "the evidence is not bound to this verifier's nonce and the enclave's key (replayed or substituted evidence)",
      )
    return body
  }
}

/** One attestation round: issue a nonce, fetch evidence for it, spend the nonce, verify. */
export async function attest(
  verifier: Verifier,
  nonces: NonceBook,
  fetchEvidence: (nonce: Uint8Array) => Promise<unknown>,
  expectHost?: string,
): Promise<{ claims: Claims; evidence: Evidence }> {
  const nonce = nonces.issue()
  const evidence = await fetchEvidence(nonce)
  nonces.spend(nonce)
  const claims = await verifier.verify(evidence, nonce, expectHost)
  return { claims, evidence: evidence as Evidence }
}
