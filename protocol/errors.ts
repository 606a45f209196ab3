import { SyndicateError } from '../crypto/errors.ts'

/** Stable codes for what can go wrong between nodes; peers and operators match on these. */
export const ProtocolErrorCode = {
  NOT_MEMBER: 'ERR_NOT_MEMBER',
  MESSAGE_TOO_LARGE: 'ERR_MESSAGE_TOO_LARGE',
  INVALID_MESSAGE: 'ERR_INVALID_MESSAGE',
  TIMEOUT: 'ERR_PROTOCOL_TIMEOUT',
  STREAM_CLOSED: 'ERR_STREAM_CLOSED',
  REMOTE_ERROR: 'ERR_REMOTE_ERROR',
  INVALID_CONSORTIUM: 'ERR_INVALID_CONSORTIUM',
  NO_CONSORTIUM: 'ERR_NO_CONSORTIUM',
} as const

export type ProtocolErrorCode = (typeof ProtocolErrorCode)[keyof typeof ProtocolErrorCode]

export class ProtocolError extends SyndicateError {
  constructor(
    code: ProtocolErrorCode,
    message: string,
    details?: Record<string, unknown>,
    options?: ErrorOptions,
  ) {
    super(code, message, details, options)
    this.name = 'ProtocolError'
  }
}
