/**
 * The project's error base: every error a user or a peer can cause carries a stable `code` that scripts and
 * API clients can match on, and a message that says what to do. Lower layers define the codes they raise.
 */
export class SyndicateError extends Error {
  readonly code: string
  readonly details?: Record<string, unknown>

  constructor(code: string, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SyndicateError'
    this.code = code
    this.details = details
  }
}

export function isSyndicateError(e: unknown, code?: string): e is SyndicateError {
  return e instanceof SyndicateError && (code === undefined || e.code === code)
}
