import pino, { type DestinationStream, type Logger } from 'pino'

/** Structured JSON logs, one object per line, with the node's name on every line. */
export function createLogger(name: string, level: string, destination?: DestinationStream): Logger {
  return pino(
    { level, base: { node: name }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination(2),
  )
}
