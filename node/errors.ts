import { readFileSync } from 'node:fs'
import { SyndicateError } from '../crypto/errors.ts'

/** Errors an operator fixes by hand (bad config, unreadable identity): the CLI exits 2 on these. */
export class UsageError extends SyndicateError {
  constructor(code: string, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(code, message, details, options)
    this.name = 'UsageError'
  }
}

export const NodeErrorCode = {
  CONFIG: 'ERR_CONFIG',
  IDENTITY: 'ERR_IDENTITY',
  IDENTITY_EXISTS: 'ERR_IDENTITY_EXISTS',
  NOT_INITIALISED: 'ERR_NOT_INITIALISED',
  DATA_DIR_LOCKED: 'ERR_DATA_DIR_LOCKED',
} as const

/** Reads a file of a node's data directory; a missing one means the directory was never initialised. */
export function readDataDirFile(path: string, what: string, dir: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new UsageError(
      NodeErrorCode.NOT_INITIALISED,
      `no ${what} at ${path}: run "syndicate init --dir ${dir} --name NAME" first`,
      { file: path },
      { cause: e },
    )
  }
}
