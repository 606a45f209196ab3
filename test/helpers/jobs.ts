import type { RunningNode } from '../../node/daemon.ts'
import type { JobView } from '../../node/jobs/service.ts'
import type { JobState } from '../../protocol/jobs.ts'

/** Polls `node` until job `id` is in one of `states`; fails with the job's last state and reason. */
export async function waitForJob(
  node: RunningNode,
  id: string,
  states: JobState[],
  timeoutMs = 15_000,
): Promise<JobView> {
  const deadline = Date.now() + timeoutMs
  let last: JobView | undefined
  while (Date.now() < deadline) {
    last = await node.jobs.get(id)
    if (last && states.includes(last.state)) return last
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(
    `job ${id} on ${node.config.name} is ${last?.state ?? 'unknown'} (${last?.reason ?? ''}), expected ${states.join('|')}`,
  )
}

/** The HTTP API, status and body, without throwing: tests assert on refusals too. */
export { request as api } from '../../sim/scenario.ts'
