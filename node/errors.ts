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
