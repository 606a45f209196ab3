import type { Command } from 'commander'
import { apiCall, apiOptions, resolveTarget } from './client.ts'

interface EnclaveInfo {
  hosting: boolean
  publicKey?: string
  instances: { id: string; measurement: string; svn: number; debug: boolean; holds: Record<string, number> }[]
}

export function registerEnclaveCommands(program: Command): void {
  const enclave = program.command('enclave').description('the enclave instances this node hosts (tee jobs)')
  apiOptions(
    enclave
      .command('status')
      .description('instances, their measurement and what each holds (counts, never data)'),
  ).action(async (o) => {
    const info = await apiCall<EnclaveInfo>(resolveTarget(o), 'GET', '/v1/enclave')
    if (!info.hosting) {
      process.stdout.write('this node hosts no enclave (set enclave.instances in syndicate.yaml)\n')
      return
    }
    process.stdout.write(`cluster key ${info.publicKey}\n`)
    for (const i of info.instances) {
      const holds = Object.entries(i.holds)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')
      process.stdout.write(
        `${i.id.padEnd(12)} measurement ${i.measurement.slice(0, 16)}… svn ${i.svn}${i.debug ? ' DEBUG' : ''}  ${holds}\n`,
      )
    }
  })
}
