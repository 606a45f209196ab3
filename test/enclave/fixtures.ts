import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { prepareUpload } from '../../enclave/client.ts'
import { SimulatedPlatform } from '../../enclave/platform.ts'
import { specHashOf } from '../../enclave/release.ts'
import type { Claims } from '../../enclave/verifier.ts'
import { type Dataset, subset } from '../../learning/data/dataset.ts'
import { guest, host } from '../helpers/vertical.ts'

export interface Member {
  name: string
  key: PrivateKey
  peerId: string
}

export async function member(name: string): Promise<Member> {
  const key = await generateKeyPair('Ed25519')
  return { name, key, peerId: peerIdFromPrivateKey(key).toString() }
}

export async function platformOf(hostMember: Member): Promise<SimulatedPlatform> {
  return SimulatedPlatform.create(hostMember.key, hostMember.peerId)
}

/** A committed tee job spec: bank-a (label) and lender-b (features) upload; the model goes to bank-a. */
export function teeSpec(
  id: string,
  bank: Member,
  lender: Member,
  enclaveHost: Member,
  algorithm = 'lr',
  params: Record<string, unknown> = {},
) {
  return {
    v: 1,
    id,
    kind: 'train',
    proposer: bank.peerId,
    parties: [
      { name: bank.name, peerId: bank.peerId, roles: ['label-holder'], dataset: 'guest' },
      { name: lender.name, peerId: lender.peerId, roles: ['feature-holder'], dataset: 'host' },
      { name: enclaveHost.name, peerId: enclaveHost.peerId, roles: ['enclave-host'] },
    ],
    mode: 'tee',
    algorithm,
    params,
    outputs: [{ what: 'model', to: [bank.name] }],
    deadline: '2030-01-01T00:00:00.000Z',
    createdAt: '2026-01-01T00:00:00.000Z',
  }
}

/** The owners' rows: the bundled vertical split, optionally its first `rows` customers with ids renamed. */
export function ownerRows(rows?: number, idPrefix = ''): { guest: Dataset; host: Dataset } {
  const pick = (d: Dataset) => {
    const s = rows
      ? subset(
          d,
          Array.from({ length: rows }, (_, i) => i),
        )
      : d
    return idPrefix ? { ...s, ids: s.ids.map((id) => `${idPrefix}${id}`) } : s
  }
  return { guest: pick(guest), host: pick(host) }
}

export async function uploadFor(
  spec: ReturnType<typeof teeSpec>,
  owner: Member,
  rows: Dataset,
  claims: Claims,
  overrides: { algorithms?: string[]; recipients?: string[] } = {},
) {
  return prepareUpload({
    claims,
    rows,
    signingKey: owner.key,
    policy: {
      job: spec.id,
      specHash: specHashOf(spec),
      owner: owner.peerId,
      party: owner.name,
      algorithms: overrides.algorithms ?? ['lr', 'gbdt', 'mlp'],
      recipients: overrides.recipients ?? [spec.parties[0].name],
      notAfter: Date.now() + 3_600_000,
    },
  })
}
