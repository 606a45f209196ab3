import type { PartyChannel } from '../../../crypto/channel.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import { openScores, sealScoreRows } from '../../../enclave/client.ts'
import type { EnclaveCluster } from '../../../enclave/cluster.ts'
import { Tags } from '../../../enclave/wire.ts'
import type { Dataset } from '../../../learning/data/dataset.ts'
import type { JobSpec } from '../../../protocol/jobs.ts'
import { enclaveHostOf, type HostRecord, type OwnerRecord, replyKeyOf } from '../../jobs/enclave.ts'

/**
 * Online prediction of an enclave-trained model: each data owner seals its columns of the customers to the
 * attested cluster key; the enclave host hands them, with the model sealed to its cluster, to an enclave
 * instance; the probabilities come back sealed to the requester's reply key. The host sees ciphertext only.
 */
export async function teeScoreOwner(
  channel: PartyChannel,
  spec: JobSpec,
  self: string,
  session: string,
  rows: Dataset,
  rec: OwnerRecord,
  requester: string,
): Promise<Float64Array | undefined> {
  const host = enclaveHostOf(spec)!.name
  await channel.send(host, Tags.scoreRows, sealScoreRows(rec.clusterKey, rows, spec.id, session, self))
  if (self !== requester) return undefined
  const reply = replyKeyOf(rec)
  if (!reply)
    throw new SyndicateError(
      'ERR_FORBIDDEN',
      `${self} did not receive the model of job ${spec.id}, so gets no scores`,
    )
  return openScores(reply, await channel.recv(host, Tags.scores), spec.id, session)
}

export async function teeScoreHost(
  channel: PartyChannel,
  spec: JobSpec,
  session: string,
  cluster: EnclaveCluster | undefined,
  rec: HostRecord,
  requester: string,
): Promise<void> {
  if (!cluster) throw new SyndicateError('ERR_ENCLAVE_UNAVAILABLE', 'this node no longer hosts an enclave')
  const owners = spec.parties.filter((p) => p.dataset)
  const rows = Object.fromEntries(
    await Promise.all(owners.map(async (o) => [o.name, await channel.recv(o.name, Tags.scoreRows)] as const)),
  )
  const box = await cluster.score(spec.id, Buffer.from(rec.sealedModel, 'base64'), session, requester, rows)
  await channel.send(requester, Tags.scores, box)
}
