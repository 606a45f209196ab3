import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { NodeErrorCode, readDataDirFile, UsageError } from './errors.ts'

/**
 * The node's persistent Ed25519 identity: its libp2p peer id and the key that signs its consortium and log
 * entries. Stored as the libp2p protobuf encoding, base64, in a 0600 file; never overwritten.
 */
export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: PeerId
}

export async function createIdentity(dir: string): Promise<Identity> {
  const file = join(dir, IDENTITY_FILE)
  if (existsSync(file)) {
    throw new UsageError(
      NodeErrorCode.IDENTITY_EXISTS,
      `${file} already exists; refusing to overwrite an identity`,
      { file },
    )
  }
  const privateKey = await generateKeyPair('Ed25519')
  const body = JSON.stringify({
    type: 'Ed25519',
    privateKey: Buffer.from(privateKeyToProtobuf(privateKey)).toString('base64'),
  })
  // 'wx' fails if the file appeared meanwhile, so two concurrent inits cannot clobber each other.
  writeFileSync(file, `${body}\n`, { mode: 0o600, flag: 'wx' })
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
}

export function loadIdentity(dir: string): Identity {
  const file = join(dir, IDENTITY_FILE)
  const text = readDataDirFile(file, 'identity', dir)
  try {
    const parsed = JSON.parse(text) as { type?: unknown; privateKey?: unknown }
    if (parsed.type !== 'Ed25519' || typeof parsed.privateKey !== 'string')
      throw new Error('expected {"type":"Ed25519","privateKey":"<base64>"}')
    const privateKey = privateKeyFromProtobuf(Buffer.from(parsed.privateKey, 'base64'))
    if (privateKey.type !== 'Ed25519') throw new Error(`key type ${privateKey.type} is not Ed25519`)
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
  } catch (e) {
    throw new UsageError(
      NodeErrorCode.IDENTITY,
      `identity file ${file} is corrupt (${(e as Error).message}); restore it from backup — it is not regenerated, because the peer id is the node's membership`,
      { file },
    )
  }
}
