/**
 * The data owner's side of enclave mode: after attesting the enclave, it encrypts its rows under a fresh data
 * key, signs its usage policy, wraps the data key to the attested cluster key under that policy, and later
 * checks the enclave's "destroyed" record and opens the outputs sealed to it.
 */
import type { PrivateKey } from '@libp2p/interface'
import { ed25519 } from '@noble/curves/ed25519.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { type BoxKeyPair, newBoxKeyPair, openBox, sealBox } from '../crypto/box.ts'
import { SyndicateError } from '../crypto/errors.ts'
import type { Dataset } from '../learning/data/dataset.ts'
import type { Model } from '../learning/models/types.ts'
import { splitPublicKey } from './evidence.ts'
import { encodeTable, encryptChunks, newDataKey } from './payload.ts'
import { policyHash, type SignedUsagePolicy, signUsagePolicy, type UsagePolicy } from './release.ts'
import { type DestroyedRecord, destroyedBytes } from './runtime/engine.ts'
import type { Claims } from './verifier.ts'

export interface PreparedUpload {
  policy: SignedUsagePolicy
  wrappedKey: Uint8Array
  chunks: Uint8Array[]
  /** Opens the model and scores the enclave seals to this owner. */
  replyKey: BoxKeyPair
}

export async function prepareUpload(opts: {
  claims: Claims
  rows: Dataset
  policy: Omit<UsagePolicy, 'v' | 'replyKey' | 'measurement' | 'columns'>
  signingKey: PrivateKey
}): Promise<PreparedUpload> {
  const replyKey = newBoxKeyPair()
  const policy: UsagePolicy = {
    v: 1,
    ...opts.policy,
    columns: opts.rows.featureNames,
    replyKey: bytesToHex(replyKey.pub),
    measurement: opts.claims.measurement,
  }
  const signed = await signUsagePolicy(policy, opts.signingKey)
  const dataKey = newDataKey()
  const plain = encodeTable(opts.rows)
  try {
    const chunks = encryptChunks(dataKey, plain, policy.job, policy.party)
    const wrappedKey = sealBox(
      splitPublicKey(opts.claims.publicKey).box,
      dataKey,
      'data-key',
      policyHash(policy),
    )
    return { policy: signed, wrappedKey, chunks, replyKey }
  } finally {
    dataKey.fill(0)
    plain.fill(0)
  }
}

/** True when the record is signed by the attested enclave cluster key. */
export function destroyedSigned(record: DestroyedRecord, signature: string, claims: Claims): boolean {
  try {
    return ed25519.verify(
      Buffer.from(signature, 'base64'),
      destroyedBytes(record),
      splitPublicKey(claims.publicKey).sign,
    )
  } catch {
    return false
  }
}

export function openModel(replyKey: BoxKeyPair, box: Uint8Array, job: string): Model {
  const plain = openBox(replyKey, box, 'model', new TextEncoder().encode(job))
  if (!plain)
    throw new SyndicateError(
      'ERR_ENCLAVE_TAMPERED',
      `the model of job ${job} does not open with this party's key`,
    )
  return JSON.parse(new TextDecoder().decode(plain)) as Model
}

/** An owner's columns of the customers to score, sealed to the attested cluster key for one session. */
export function sealScoreRows(
  clusterPublicKey: string,
  rows: Dataset,
  job: string,
  session: string,
  party: string,
) {
  const plain = encodeTable(rows)
  try {
    return sealBox(
      splitPublicKey(clusterPublicKey).box,
      plain,
      'score-rows',
      new TextEncoder().encode(`${job}\n${session}\n${party}`),
    )
  } finally {
    plain.fill(0)
  }
}

export function openScores(
  replyKey: BoxKeyPair,
  box: Uint8Array,
  job: string,
  session: string,
): Float64Array {
  const plain = openBox(replyKey, box, 'scores', new TextEncoder().encode(`${job}\n${session}`))
  if (!plain || plain.length % 8 !== 0)
    throw new SyndicateError(
      'ERR_ENCLAVE_TAMPERED',
      `the scores of job ${job} do not open with this party's key`,
    )
  return new Float64Array(plain.buffer, plain.byteOffset, plain.length / 8).slice()
}
