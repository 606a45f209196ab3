import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import { canonicalJson } from '../../crypto/canonical.ts'
import { SyndicateError } from '../../crypto/errors.ts'
import {
  type ConsortiumDocument,
  ConsortiumDocumentSchema,
  documentHash,
  type Member,
  MemberSchema,
  nextVersion,
  SignatureSchema,
  signDocument,
  verifyDocument,
} from '../../protocol/consortium.ts'
import type { JobSpec } from '../../protocol/jobs.ts'
import type { Membership } from '../membership.ts'
import type { Executor } from './executors.ts'

/**
 * `membership` jobs admit or remove a member. The proposer drafts the successor document; every party checks
 * that it is exactly the change the spec names, signs it and returns its signature; the proposer assembles the
 * signed document, which every party installs. The consortium's threshold is checked twice: at proposal (the
 * parties must be enough signers) and by `verifyDocument` before anyone installs.
 */
export const MembershipParamsSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('admit'), member: MemberSchema }),
  z.strictObject({ action: z.literal('remove'), name: z.string().min(1).max(64) }),
])
export type MembershipParams = z.infer<typeof MembershipParamsSchema>

/** The member list the change leads to, or an error saying why the change is not possible. */
export function changedMembers(current: ConsortiumDocument, params: MembershipParams): Member[] {
  const members = current.body.members
  if (params.action === 'admit') {
    if (members.some((m) => m.name === params.member.name || m.peerId === params.member.peerId)) {
      throw new SyndicateError('ERR_INVALID_REQUEST', `${params.member.name} is already a member`)
    }
    return [...members, params.member]
  }
  if (!members.some((m) => m.name === params.name))
    throw new SyndicateError('ERR_INVALID_REQUEST', `${params.name} is not a member`)
  if (members.length === 1) throw new SyndicateError('ERR_INVALID_REQUEST', 'cannot remove the last member')
  return members.filter((m) => m.name !== params.name)
}

/** Checks a membership spec before voting on it: the right parameters and enough signers among the parties. */
export function checkMembershipSpec(
  spec: JobSpec,
  current: ConsortiumDocument | undefined,
): string | undefined {
  if (!current) return 'no consortium is installed'
  const parsed = MembershipParamsSchema.safeParse(spec.params)
  if (!parsed.success) return `invalid membership params: ${parsed.error.issues[0]?.message}`
  const params = parsed.data
  try {
    changedMembers(current, params)
  } catch (e) {
    return (e as Error).message
  }
  const signers = spec.parties.filter((p) => current.body.members.some((m) => m.peerId === p.peerId)).length
  if (signers < current.body.threshold)
    return `${signers} member parties cannot reach the threshold of ${current.body.threshold}`
  if (params.action === 'remove' && spec.parties.some((p) => p.name === params.name))
    return 'the member being removed cannot be a party'
  return undefined
}

const SigMessage = SignatureSchema

export function membershipExecutor(deps: {
  membership: Membership
  privateKey: PrivateKey
  peerId: string
}): Executor {
  return async (ctx) => {
    const current = deps.membership.document
    const problem = checkMembershipSpec(ctx.spec, current)
    if (problem || !current) throw new SyndicateError('ERR_INVALID_REQUEST', problem ?? 'no consortium')
    const params = MembershipParamsSchema.parse(ctx.spec.params)
    const proposer = ctx.spec.parties.find((p) => p.peerId === ctx.spec.proposer)!.name
    const others = ctx.channel.parties.filter((p) => p !== ctx.self)
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v))
    const dec = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as unknown
    const me = peerIdFromString(deps.peerId)
    let doc: ConsortiumDocument
    if (ctx.self === proposer) {
      doc = await signDocument(
        nextVersion(current, { members: changedMembers(current, params) }),
        deps.privateKey,
        me,
      )
      ctx.progress({ phase: 'collecting signatures', done: 1, total: ctx.channel.parties.length })
      await Promise.all(others.map((p) => ctx.channel.send(p, 'membership/draft', enc(doc.body))))
      const sigs = await Promise.all(
        others.map(async (p) => SigMessage.parse(dec(await ctx.channel.recv(p, 'membership/signature')))),
      )
      doc = { body: doc.body, signatures: [...doc.signatures, ...sigs] }
      const v = await verifyDocument(doc, current)
      if (!v.ok)
        throw new SyndicateError(
          'ERR_INVALID_CONSORTIUM',
          v.reason ?? `the document lacks ${v.needed} signatures`,
        )
      await Promise.all(others.map((p) => ctx.channel.send(p, 'membership/document', enc(doc))))
    } else {
      const draft = ConsortiumDocumentSchema.shape.body.parse(
        dec(await ctx.channel.recv(proposer, 'membership/draft')),
      )
      const expected = nextVersion(current, { members: changedMembers(current, params) }).body
      // Everything but the creation time must be exactly the change the spec names.
      if (canonicalJson({ ...draft, createdAt: '' }) !== canonicalJson({ ...expected, createdAt: '' })) {
        throw new SyndicateError(
          'ERR_PROTOCOL_VIOLATION',
          `the draft from ${proposer} is not the change the job names`,
        )
      }
      const signed = await signDocument({ body: draft, signatures: [] }, deps.privateKey, me)
      await ctx.channel.send(proposer, 'membership/signature', enc(signed.signatures[0]))
      doc = ConsortiumDocumentSchema.parse(dec(await ctx.channel.recv(proposer, 'membership/document')))
      if (canonicalJson(doc.body) !== canonicalJson(draft))
        throw new SyndicateError(
          'ERR_PROTOCOL_VIOLATION',
          'the final document differs from the draft this party signed',
        )
    }
    await deps.membership.install(doc)
    ctx.progress({ phase: 'installed', done: 1, total: 1 })
    const hash = documentHash(doc.body)
    return {
      metrics: { version: doc.body.version, members: doc.body.members.length },
      resultHash: hash,
      summary: { documentHash: hash, version: doc.body.version },
    }
  }
}
