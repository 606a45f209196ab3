/**
 * The benchmark line convention: one JSON object per line with `bench`, `case`, figures whose keys carry
 * their unit, and for comparisons `baseline_s` (measured in the same run) and `ratio`.
 */
export interface BenchLine {
  bench: string
  case: string
  [figure: string]: string | number | boolean | undefined
}

export function emit(line: BenchLine): void {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(line)) {
    if (v === undefined) continue
    out[k] = typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(6)) : v
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

/** Wall-clock seconds of `fn`, best of `repeat` runs (noise on a shared machine only ever adds time). */
export async function timeBest(fn: () => unknown, repeat = 3): Promise<number> {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now()
    await fn()
    best = Math.min(best, (performance.now() - t0) / 1000)
  }
  return best
}

export function ratio(seconds: number, baselineSeconds: number): number {
  return baselineSeconds > 0 ? seconds / baselineSeconds : Number.NaN
}

export function percentile(sortedAsc: ArrayLike<number>, p: number): number {
  if (sortedAsc.length === 0) return Number.NaN
  const idx = Math.min(sortedAsc.length - 1, Math.max(0, Math.ceil((p / 100) * sortedAsc.length) - 1))
  return sortedAsc[idx]
}
