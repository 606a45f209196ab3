import type { ComprModeType, EncryptionParameters, MainModule, SEALContext } from 'node-seal'
import { SyndicateError } from '../errors.ts'
import { sha256 } from './envelope.ts'
import { HE_PRESETS, type HePresetName, type PresetSpec } from './params.ts'
import { sealMessage } from './seal.ts'

/** Helpers shared by the evaluator and the key owner: fingerprints, SEAL (de)serialisation, error builders. */

const KEY_ID_DOMAIN = new TextEncoder().encode('syndicate/he/key-id/v1')

export function hashParams(seal: MainModule, parms: EncryptionParameters): Uint8Array {
  return sha256(parms.saveToArray(seal.ComprModeType.none) as Uint8Array)
}

export function keyIdOf(paramsHash: Uint8Array, preset: string, publicKey: Uint8Array): Uint8Array {
  return sha256(KEY_ID_DOMAIN, new TextEncoder().encode(preset), paramsHash, publicKey)
}

/** Saves (zstd-compressed) and deletes a SEAL serialisable object. */
export function saveSerializable(
  seal: MainModule,
  obj: { saveToArray(m: ComprModeType): unknown; delete(): void },
): Uint8Array {
  try {
    return obj.saveToArray(seal.ComprModeType.zstd) as Uint8Array
  } finally {
    obj.delete()
  }
}

export function loadSealObject<T extends { loadFromArray(c: SEALContext, b: unknown): void; delete(): void }>(
  make: () => T,
  context: SEALContext,
  bytes: Uint8Array,
  what: string,
): T {
  const obj = make()
  try {
    obj.loadFromArray(context, bytes)
    return obj
  } catch (e) {
    obj.delete()
    throw new SyndicateError('ERR_HE_MALFORMED', `invalid ${what}: ${sealMessage(e)}`, { what }, { cause: e })
  }
}

export function scaleBitsOf(preset: HePresetName): number {
  const spec: PresetSpec = HE_PRESETS[preset]
  return spec.scheme === 'ckks' ? spec.scaleBits : 0
}

export function sameLength(a: number, b: number): void {
  if (a !== b) {
    throw new SyndicateError('ERR_HE_LENGTH_MISMATCH', `vector lengths differ (${a} vs ${b})`, { a, b })
  }
}

export function depthExhausted(preset: string): SyndicateError {
  return new SyndicateError(
    'ERR_HE_DEPTH_EXHAUSTED',
    `no multiplicative level left under ${preset}; decrypt and re-encrypt, or use a preset with more levels`,
    { preset },
  )
}

export function schemeMismatch(op: string, want: string, have: string): SyndicateError {
  return new SyndicateError('ERR_HE_SCHEME_MISMATCH', `${op} needs a ${want} context, this one is ${have}`, {
    op,
  })
}

export function badInput(message: string): SyndicateError {
  return new SyndicateError('ERR_HE_BAD_INPUT', message, {})
}
