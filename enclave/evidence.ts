/**
 * Attestation evidence of the simulated TEE ('sim'): the claims a real quote carries, signed by a platform key.
 *
 *   measurement  hash of the enclave's code bundle and configuration      (SGX MRENCLAVE, TDX MRTD/RTMRs)
 *   signer       hash of the key that signed the enclave bundle            (SGX MRSIGNER)
 *   productId    the product the bundle belongs to                         (SGX ISVPRODID)
 *   svn          security version, raised with every security fix          (SGX ISVSVN, TDX TEE_TCB_SVN)
 *   debug        whether the host can debug (read) the enclave             (SGX ATTRIBUTES.DEBUG, TDX TD_ATTRIBUTES)
 *   reportData   H(enclave public key ‖ verifier nonce)                    (SGX/TDX REPORTDATA, 64 bytes there)
 *
 * The platform key stands for the CPU's attestation key (SGX's PCK chain up to Intel's root); here it is
 * certified by the enclave host's consortium identity instead, so a verifier knows which member runs it.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, concatBytes, hexToBytes } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { canonicalBytes, signingBytes } from '../crypto/canonical.ts'

export const Hex32 = z.string().regex(/^[0-9a-f]{64}$/)
const HexKey = z.string().regex(/^[0-9a-f]{128}$/, 'an X25519 ‖ Ed25519 public key pair in hex')
const Base64Sig = z.string().regex(/^[A-Za-z0-9+/]{86}==$/)

export const EvidenceBodySchema = z.strictObject({
  v: z.literal(1),
  tee: z.literal('sim'),
  instanceId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  measurement: Hex32,
  signer: Hex32,
  productId: z.number().int().min(0).max(65535),
  svn: z.number().int().min(0).max(65535),
  debug: z.boolean(),
  /** The enclave's public keys: X25519 (keys are wrapped to it) ‖ Ed25519 (it signs records with it). */
  publicKey: HexKey,
  reportData: Hex32,
  issuedAt: z.number().int().nonnegative(),
  platform: z.strictObject({
    /** Ed25519 public key (hex) of the simulated platform that signs evidence. */
    key: Hex32,
    /** Peer id of the consortium member that runs the platform. */
    host: z.string().min(40).max(80),
    /** The host's signature (base64) over the platform key: `platformCertBytes`. */
    cert: Base64Sig,
  }),
})
export const EvidenceSchema = EvidenceBodySchema.extend({ signature: Base64Sig })
export type EvidenceBody = z.infer<typeof EvidenceBodySchema>
export type Evidence = z.infer<typeof EvidenceSchema>

export const NONCE_BYTES = 32

/** REPORTDATA: binds the enclave's public key to one verifier's nonce. */
export function reportData(publicKey: Uint8Array, nonce: Uint8Array): string {
  return bytesToHex(sha256(concatBytes(publicKey, nonce)))
}

export function evidenceSigningBytes(body: EvidenceBody): Uint8Array {
  return signingBytes('enclave/evidence/v1', body)
}

export function platformCertBytes(platformKeyHex: string): Uint8Array {
  return concatBytes(new TextEncoder().encode('syndicate/enclave/platform/v1\n'), hexToBytes(platformKeyHex))
}

export function evidenceHash(e: Evidence): string {
  return bytesToHex(sha256(canonicalBytes(e)))
}

/** The two halves of an evidence's `publicKey`. */
export function splitPublicKey(hex: string): { box: Uint8Array; sign: Uint8Array } {
  const b = hexToBytes(hex)
  return { box: b.subarray(0, 32), sign: b.subarray(32, 64) }
}
