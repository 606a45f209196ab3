import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import YAML from 'yaml'
import { z } from 'zod'
import { AppraisalPolicySchema, DEFAULT_APPRAISAL } from '../../enclave/appraisal.ts'
import { TEE_ALGORITHMS } from '../../enclave/release.ts'
import { JOB_KINDS, type JobSpec, PRIVACY_MODES } from '../../protocol/jobs.ts'
import { UsageError } from '../errors.ts'

/**
 * A node's local policy: what it agrees to take part in. Every proposal is checked against it; a violation is
 * a reject with the reasons, otherwise the job is accepted automatically or waits for a person, as the policy
 * says. Loaded from `policy.yaml` in the data directory, replaceable through the API.
 */
const Name = z.string().regex(/^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/)
const Kind = z.enum(JOB_KINDS)
const Mode = z.enum(PRIVACY_MODES)

export const DatasetPolicySchema = z.strictObject({
  /** Columns others may use ('*' = all). */
  columns: z.union([z.literal('*'), z.array(z.string().min(1))]).default('*'),
  /** Members this dataset may be used with ('*' = any member). */
  partners: z.union([z.literal('*'), z.array(Name)]).default('*'),
  kinds: z.array(Kind).optional(),
  modes: z.array(Mode).optional(),
  /** Total differential-privacy budget of this dataset across all DP jobs (basic composition). */
  privacyBudget: z.strictObject({ epsilon: z.number().positive(), delta: z.number().gt(0).lt(1) }).optional(),
})

export const EnclavePolicySchema = z.strictObject({
  /** Appraisal of attestation evidence: allowed measurements ('self' = this installation's build), signers,
   * product, minimum security version, debug. */
  appraisal: AppraisalPolicySchema.default(DEFAULT_APPRAISAL),
  /** Algorithms an enclave may run on this node's rows. */
  algorithms: z
    .array(z.enum(TEE_ALGORITHMS))
    .min(1)
    .default([...TEE_ALGORITHMS]),
  /** Members that may receive models trained on this node's rows ('*' = whoever the approved job names). */
  recipients: z.union([z.literal('*'), z.array(Name)]).default('*'),
})
export type EnclavePolicy = z.infer<typeof EnclavePolicySchema>

export const PolicySchema = z.strictObject({
  approval: z.enum(['auto', 'manual']).default('manual'),
  /** Member name (or '*') → the job kinds it may propose ('*' = all). */
  proposers: z.record(Name, z.union([z.literal('*'), z.array(Kind)])).default({ '*': '*' }),
  modes: z.array(Mode).default([...PRIVACY_MODES]),
  minParties: z.number().int().min(1).max(64).default(2),
  /** Datasets of this node that jobs may use ('*' = any registered dataset); others are rejected. */
  datasets: z.record(Name, DatasetPolicySchema).default({}),
  /** Enclave (`tee`) jobs: which enclaves this node trusts, and what its signed usage policies allow. */
  enclave: EnclavePolicySchema.default(EnclavePolicySchema.parse({})),
})
export type Policy = z.infer<typeof PolicySchema>

export const DEFAULT_POLICY: Policy = PolicySchema.parse({})
export const POLICY_FILE = 'policy.yaml'

export interface PolicyDecision {
  decision: 'accept' | 'reject' | 'manual'
  reasons: string[]
}

/** Checks `spec` from the point of view of the party `selfPeerId`; `proposerName` resolves via membership. */
export function evaluatePolicy(
  policy: Policy,
  spec: JobSpec,
  selfPeerId: string,
  proposerName: string,
): PolicyDecision {
  const reasons: string[] = []
  const allowedKinds = policy.proposers[proposerName] ?? policy.proposers['*']
  if (!allowedKinds || (allowedKinds !== '*' && !allowedKinds.includes(spec.kind))) {
    reasons.push(`${proposerName} may not propose ${spec.kind} jobs`)
  }
  if (!policy.modes.includes(spec.mode))
    reasons.push(`privacy mode ${spec.mode} is not allowed (allowed: ${policy.modes.join(', ')})`)
  if (spec.parties.length < policy.minParties)
    reasons.push(`${spec.parties.length} parties is fewer than the minimum ${policy.minParties}`)
  const me = spec.parties.find((p) => p.peerId === selfPeerId)
  if (me?.dataset) {
    const ds = policy.datasets[me.dataset] ?? policy.datasets['*']
    if (!ds) {
      reasons.push(`dataset ${me.dataset} is not open to joint jobs`)
    } else {
      if (ds.columns !== '*') {
        const extra = (me.columns ?? []).filter((c) => !(ds.columns as string[]).includes(c))
        if (extra.length) reasons.push(`columns not allowed for ${me.dataset}: ${extra.join(', ')}`)
        if (!me.columns) reasons.push(`the job must name the columns of ${me.dataset} it uses`)
      }
      if (ds.partners !== '*') {
        const others = spec.parties.filter((p) => p.peerId !== selfPeerId).map((p) => p.name)
        const notAllowed = others.filter((o) => !(ds.partners as string[]).includes(o))
        if (notAllowed.length) reasons.push(`${me.dataset} may not be used with ${notAllowed.join(', ')}`)
      }
      if (ds.kinds && !ds.kinds.includes(spec.kind))
        reasons.push(`${me.dataset} may not be used for ${spec.kind} jobs`)
      if (ds.modes && !ds.modes.includes(spec.mode))
        reasons.push(`${me.dataset} may not be used in ${spec.mode} mode`)
    }
  }
  if (reasons.length) return { decision: 'reject', reasons }
  return { decision: policy.approval === 'auto' ? 'accept' : 'manual', reasons: [] }
}

export function parsePolicy(value: unknown, where: string): Policy {
  const r = PolicySchema.safeParse(value ?? {})
  if (!r.success) {
    const i = r.error.issues[0]
    throw new UsageError(
      'ERR_POLICY',
      `invalid policy ${where} at "${i.path.join('.') || '(root)'}": ${i.message}`,
      { field: i.path.join('.') },
    )
  }
  return r.data
}

/** The policy file of a data directory, or the default (manual approval) when there is none. */
export function loadPolicyFile(dir: string): Policy {
  const file = join(dir, POLICY_FILE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return DEFAULT_POLICY
  }
  let raw: unknown
  try {
    raw = YAML.parse(text)
  } catch (e) {
    throw new UsageError(
      'ERR_POLICY',
      `policy file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`,
    )
  }
  return parsePolicy(raw, `in ${file}`)
}
