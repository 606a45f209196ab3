/**
 * The simulated TEE platform: it launches enclave instances, knows what it launched (their measurement and
 * attributes), and signs evidence for them with its platform key. An instance supplies only its public key
 * and report data; the platform fills in the rest, as SGX hardware fills MRENCLAVE into a report. The
 * platform key lives in the host process: a host that wanted to could sign anything (see docs/enclave.md).
 */
import type { PrivateKey } from '@libp2p/interface'
import { ed25519 } from '@noble/curves/ed25519.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { type Evidence, type EvidenceBody, evidenceSigningBytes, platformCertBytes } from './evidence.ts'

/** What the platform knows about an instance it launched. */
export interface LaunchAttributes {
  instanceId: string
  measurement: string
  signer: string
  productId: number
  svn: number
  debug: boolean
}

export class SimulatedPlatform {
  private readonly secret: Uint8Array
  readonly key: string
  readonly host: string
  private readonly cert: string

  private constructor(secret: Uint8Array, host: string, cert: string) {
    this.secret = secret
    this.key = bytesToHex(ed25519.getPublicKey(secret))
    this.host = host
    this.cert = cert
  }

  /** A fresh platform key, certified by the host member's identity key. */
  static async create(hostKey: PrivateKey, hostPeerId: string): Promise<SimulatedPlatform> {
    const secret = ed25519.utils.randomSecretKey()
    const key = bytesToHex(ed25519.getPublicKey(secret))
    const cert = Buffer.from(await hostKey.sign(platformCertBytes(key))).toString('base64')
    return new SimulatedPlatform(secret, hostPeerId, cert)
  }

  quote(launch: LaunchAttributes, publicKey: string, reportData: string): Evidence {
    const body: EvidenceBody = {
      v: 1,
      tee: 'sim',
      ...launch,
      publicKey,
      reportData,
      issuedAt: Date.now(),
      platform: { key: this.key, host: this.host, cert: this.cert },
    }
    const signature = Buffer.from(ed25519.sign(evidenceSigningBytes(body), this.secret)).toString('base64')
    return { ...body, signature }
  }
}
