#!/usr/bin/env node
/**
 * `syndicate`: the command line of a node. Commands that change a stopped node's data directory work on it
 * directly; commands that ask a running node go through its HTTP API (--api URL or --dir, and --token or
 * SYNDICATE_TOKEN).
 */
import { Command, CommanderError } from 'commander'
import { SyndicateError } from '../../crypto/errors.ts'
import { UsageError } from '../errors.ts'
import { registerAuditCommands } from '../services/audit/cli.ts'
import { registerConsortiumCommands } from './consortium.ts'
import { registerDatasetCommands } from './datasets.ts'
import { registerEnclaveCommands } from './enclave.ts'
import { registerJobCommands } from './jobs.ts'
import { registerModelCommands } from './models.ts'
import { registerNodeCommands } from './node.ts'

/** Builds the program; `extensions` add command groups of layers above node/ (the simulator). */
export function buildProgram(extensions: Array<(program: Command) => void> = []): Command {
  const program = new Command('syndicate')
    .description('Syndicate: joint credit and risk modelling between institutions, without sharing raw data')
    .showHelpAfterError()
    .exitOverride()
  registerNodeCommands(program)
  registerConsortiumCommands(program)
  registerJobCommands(program)
  registerDatasetCommands(program)
  registerEnclaveCommands(program)
  registerAuditCommands(program)
  registerModelCommands(program)
  for (const extend of extensions) extend(program)
  return program
}

export async function main(
  argv: string[],
  extensions: Array<(program: Command) => void> = [],
): Promise<void> {
  try {
    await buildProgram(extensions).parseAsync(argv)
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2)
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`)
      process.exit(2)
    }
    if (e instanceof SyndicateError) {
      process.stderr.write(`error [${e.code}]: ${e.message}\n`)
      process.exit(1)
    }
    process.stderr.write(`error: ${(e as Error).stack ?? e}\n`)
    process.exit(1)
  }
}
