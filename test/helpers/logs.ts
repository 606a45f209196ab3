/** A pino destination that keeps every log line, for assertions on what a node logged. */
export function captureLogs() {
  const lines: Array<Record<string, unknown>> = []
  return {
    lines,
    destination: {
      write(s: string) {
        for (const l of s.split('\n')) if (l.trim()) lines.push(JSON.parse(l))
      },
    },
    find: (pred: (l: Record<string, unknown>) => boolean) => lines.find(pred),
  }
}
