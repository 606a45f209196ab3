/**
 * The auditor's read-only HTTP API over this node's governance log, as a Hono sub-app. The node mounts it at
 * /v1/audit behind its bearer-token auth (access 'governance': operator and auditor tokens). Every answer
 * can be verified offline against the signed checkpoint (GET /checkpoint).
 */
import { Hono } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { exportBundle } from '../../../governance/bundle.ts'
import type { Member } from '../../../governance/keys.ts'
import type { GovernanceLog } from '../../../governance/log.ts'
import {
  queryCheckpoint,
  queryConsistency,
  queryEntries,
  queryInclusion,
} from '../../../governance/queries.ts'
import type { Witness } from '../../../governance/witness.ts'

export interface AuditRoutesDeps {
  log: GovernanceLog
  /** The consortium's current members (their keys verify checkpoints and cosignatures). */
  members: () => readonly Member[]
  /** This node's witness, whose evidence against other logs is exported too. */
  witness?: Witness
}

const STATUS: Record<string, ContentfulStatusCode> = {
  ERR_GOV_QUERY: 400,
  ERR_GOV_RANGE: 404,
  ERR_MERKLE_RANGE: 400,
  ERR_GOV_STORE_CORRUPT: 500,
  ERR_GOV_CHECKPOINT: 500,
}

/** Route descriptions for the node's OpenAPI document (paths relative to the mount point). */
export const auditRouteDocs = [
  {
    method: 'get',
    path: '/checkpoint',
    summary: 'Latest signed checkpoint of the governance log, with cosignatures',
  },
  { method: 'get', path: '/entries', summary: 'Log entries [start, end), at most 1000 (query: start, end)' },
  {
    method: 'get',
    path: '/entries/:index/proof',
    summary: 'An entry and its RFC 6962 inclusion proof (query: size, default the latest checkpoint)',
  },
  {
    method: 'get',
    path: '/consistency',
    summary: 'RFC 6962 consistency proof between two tree sizes (query: from, to)',
  },
  {
    method: 'get',
    path: '/evidence',
    summary: "Inconsistencies this node's witness found in other members' logs",
  },
  { method: 'get', path: '/export', summary: 'The whole log as an offline-verifiable audit bundle' },
] as const

export function auditRoutes(deps: AuditRoutesDeps): Hono {
  const app = new Hono()
  app.onError((err, c) => {
    if (isSyndicateError(err)) {
      const status = STATUS[err.code] ?? 400
      return c.json({ error: { code: err.code, message: err.message } }, status)
    }
    console.error(err)
    return c.json({ error: { code: 'ERR_INTERNAL', message: 'internal error; see the node log' } }, 500)
  })
  app.get('/checkpoint', async (c) => c.json(await queryCheckpoint(deps.log, deps.members())))
  app.get('/entries', async (c) => c.json(await queryEntries(deps.log, c.req.query())))
  app.get('/entries/:index/proof', async (c) =>
    c.json(
      await queryInclusion(deps.log, deps.members(), {
        index: c.req.param('index'),
        size: c.req.query('size'),
      }),
    ),
  )
  app.get('/consistency', async (c) => c.json(await queryConsistency(deps.log, c.req.query())))
  app.get('/evidence', async (c) => c.json({ evidence: deps.witness ? await deps.witness.evidence() : [] }))
  app.get('/export', async (c) =>
    c.json(await exportBundle({ log: deps.log, members: deps.members(), witness: deps.witness })),
  )
  return app
}
