import { Hono } from 'hono'
import { z } from 'zod'
import { SyndicateError } from '../../crypto/errors.ts'
import { JOB_STATES, JobDraftSchema } from '../../protocol/jobs.ts'
import type { RouteDoc } from '../http/app.ts'
import { parseBody } from '../http/app.ts'
import type { Policy } from './policy.ts'
import { PolicySchema } from './policy.ts'
import type { JobService } from './service.ts'

/** `/v1/jobs` and `/v1/policy`: propose, list, inspect, approve, reject and cancel jobs; read and set policy. */
export function jobRoutes(jobs: JobService): { app: Hono; docs: Omit<RouteDoc, 'access'>[] } {
  const app = new Hono()
  const Reason = z.strictObject({ reason: z.string().max(1000).default('') })
  app.post('/', async (c) => c.json(await jobs.propose(await parseBody(c, JobDraftSchema)), 201))
  app.get('/', async (c) => {
    const state = c.req.query('state')
    if (state !== undefined && !(JOB_STATES as readonly string[]).includes(state)) {
      throw new SyndicateError(
        'ERR_INVALID_REQUEST',
        `unknown state "${state}" (one of ${JOB_STATES.join(', ')})`,
      )
    }
    return c.json({ jobs: await jobs.list(state ? { state: state as (typeof JOB_STATES)[number] } : {}) })
  })
  app.get('/pending', async (c) => c.json({ jobs: await jobs.pending() }))
  app.get('/:id', async (c) => {
    const job = await jobs.get(c.req.param('id'))
    if (!job) throw new SyndicateError('ERR_NOT_FOUND', `no job ${c.req.param('id')} on this node`)
    return c.json(job)
  })
  app.post('/:id/approve', async (c) => c.json(await jobs.approve(c.req.param('id'))))
  app.post('/:id/reject', async (c) =>
    c.json(await jobs.reject(c.req.param('id'), (await parseBody(c, Reason)).reason)),
  )
  app.post('/:id/cancel', async (c) =>
    c.json(await jobs.cancel(c.req.param('id'), (await parseBody(c, Reason)).reason)),
  )
  return {
    app,
    docs: [
      {
        method: 'post',
        path: '/',
        summary: 'Propose a job (the node signs it and asks every party)',
        body: JobDraftSchema,
      },
      {
        method: 'get',
        path: '/',
        summary: 'Jobs this node takes part in (?state=…), with progress of running ones',
      },
      { method: 'get', path: '/pending', summary: "Jobs waiting for this node's manual approval" },
      {
        method: 'get',
        path: '/:id',
        summary: 'One job: spec, votes, commit, state history, progress, result',
      },
      { method: 'post', path: '/:id/approve', summary: 'Approve a job waiting for manual approval' },
      { method: 'post', path: '/:id/reject', summary: 'Reject a job with a reason', body: Reason },
      { method: 'post', path: '/:id/cancel', summary: 'Cancel a job (any party can)', body: Reason },
    ],
  }
}

export function policyRoutes(
  get: () => Policy,
  set: (p: Policy) => Promise<void>,
): { app: Hono; docs: Omit<RouteDoc, 'access'>[] } {
  const app = new Hono()
  app.get('/', (c) => c.json(get()))
  app.put('/', async (c) => {
    const p = await parseBody(c, PolicySchema)
    await set(p)
    return c.json(p)
  })
  return {
    app,
    docs: [
      { method: 'get', path: '/', summary: "This node's job approval policy" },
      {
        method: 'put',
        path: '/',
        summary: 'Replace the job approval policy (recorded in the governance log)',
        body: PolicySchema,
      },
    ],
  }
}
