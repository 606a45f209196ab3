import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import YAML from 'yaml'
import { UsageError } from '../errors.ts'
import type { JobView } from '../jobs/service.ts'
import { apiCall, apiOptions, resolveTarget } from './client.ts'

/** `syndicate jobs …`: propose, list, show, approve, reject and cancel jobs on a running node. */
export function registerJobCommands(program: Command): void {
  const jobs = program.command('jobs').description('propose and manage joint jobs')

  apiOptions(
    jobs.command('propose').description('propose a job from a YAML or JSON draft file').argument('<file>'),
  ).action(async (file: string, o) => {
    let draft: unknown
    try {
      draft = YAML.parse(readFileSync(file, 'utf8'))
    } catch (e) {
      throw new UsageError(
        'ERR_USAGE',
        `cannot read job draft ${file}: ${(e as Error).message.split('\n')[0]}`,
      )
    }
    const job = await apiCall<JobView>(resolveTarget(o), 'POST', '/v1/jobs', draft)
    process.stdout.write(
      `proposed ${job.spec.id} (${job.spec.kind}, ${job.spec.parties.length} parties); state ${job.state}\n`,
    )
  })

  apiOptions(
    jobs
      .command('list')
      .description('jobs this node takes part in')
      .option('--state <state>', 'only jobs in this state'),
  ).action(async (o) => {
    const { jobs: list } = await apiCall<{ jobs: JobView[] }>(
      resolveTarget(o),
      'GET',
      `/v1/jobs${o.state ? `?state=${encodeURIComponent(o.state)}` : ''}`,
    )
    printTable(list)
  })

  apiOptions(jobs.command('pending').description("jobs waiting for this node's approval")).action(
    async (o) => {
      const { jobs: list } = await apiCall<{ jobs: JobView[] }>(resolveTarget(o), 'GET', '/v1/jobs/pending')
      printTable(list)
    },
  )

  apiOptions(jobs.command('show').description('one job in full (JSON)').argument('<id>')).action(
    async (id: string, o) => {
      const job = await apiCall<JobView>(resolveTarget(o), 'GET', `/v1/jobs/${encodeURIComponent(id)}`)
      process.stdout.write(`${JSON.stringify(job, null, 2)}\n`)
    },
  )

  apiOptions(jobs.command('approve').description('approve a pending job').argument('<id>')).action(
    async (id: string, o) => {
      const job = await apiCall<JobView>(
        resolveTarget(o),
        'POST',
        `/v1/jobs/${encodeURIComponent(id)}/approve`,
      )
      process.stdout.write(`approved ${id}; state ${job.state}\n`)
    },
  )

  apiOptions(
    jobs
      .command('reject')
      .description('reject a pending job')
      .argument('<id>')
      .requiredOption('--reason <text>', 'why'),
  ).action(async (id: string, o) => {
    const job = await apiCall<JobView>(
      resolveTarget(o),
      'POST',
      `/v1/jobs/${encodeURIComponent(id)}/reject`,
      { reason: o.reason },
    )
    process.stdout.write(`rejected ${id}; state ${job.state}\n`)
  })

  apiOptions(
    jobs
      .command('cancel')
      .description('cancel a job (any party can)')
      .argument('<id>')
      .option('--reason <text>', 'why', 'cancelled by the operator'),
  ).action(async (id: string, o) => {
    const job = await apiCall<JobView>(
      resolveTarget(o),
      'POST',
      `/v1/jobs/${encodeURIComponent(id)}/cancel`,
      { reason: o.reason },
    )
    process.stdout.write(`cancelled ${id}; state ${job.state}\n`)
  })
}

function printTable(list: JobView[]): void {
  if (list.length === 0) {
    process.stdout.write('no jobs\n')
    return
  }
  for (const j of list) {
    const p = j.progress
      ? ` ${j.progress.phase}${j.progress.total ? ` ${j.progress.done ?? 0}/${j.progress.total}` : ''}`
      : ''
    process.stdout.write(
      `${j.spec.id.padEnd(36)} ${j.spec.kind.padEnd(10)} ${j.state.padEnd(18)}${p}${j.reason ? `  ${j.reason}` : ''}\n`,
    )
  }
}
