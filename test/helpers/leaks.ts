/**
 * Searches captured traffic for a party's raw values: each feature value as a little-endian float64, pairs of
 * consecutive values of a column as float32 (a single float32 is too short to tell from random bytes), the
 * values' decimal text as written in the file, and runs of labels as bytes, float64 or text.
 */
export interface LeakReport {
  float64: number
  float32Pairs: number
  text: number
  labels: number
  examples: string[]
}

export function findLeaks(
  traffic: Uint8Array[],
  data: { X: Float64Array; rows: number; cols: number; y?: Uint8Array; text?: Set<string> },
): LeakReport {
  const report: LeakReport = { float64: 0, float32Pairs: 0, text: 0, labels: 0, examples: [] }
  const f64 = new Set<number>()
  const next32 = new Map<number, Set<number>>()
  for (let j = 0; j < data.cols; j++) {
    for (let i = 0; i < data.rows; i++) {
      const v = data.X[i * data.cols + j]
      // Values such as 0 and ±1 are also what protocols legitimately send (padding, flags, masks' constants).
      if (v === 0 || Math.abs(v) === 1) continue
      f64.add(v)
      if (i + 1 < data.rows) {
        const a = Math.fround(v)
        const b = Math.fround(data.X[(i + 1) * data.cols + j])
        const s = next32.get(a) ?? new Set<number>()
        next32.set(a, s)
        s.add(b)
      }
    }
  }
  const labelRuns: Uint8Array[] = []
  if (data.y && data.y.length >= 64) {
    const y = data.y.subarray(0, 64)
    labelRuns.push(Uint8Array.from(y))
    labelRuns.push(new Uint8Array(Float64Array.from(y.subarray(0, 16)).buffer))
    labelRuns.push(new TextEncoder().encode(Array.from(y.subarray(0, 32)).join(',')))
  }
  for (const buf of traffic) {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    for (let o = 0; o + 8 <= buf.byteLength; o++) {
      const d = view.getFloat64(o, true)
      if (f64.has(d)) {
        report.float64++
        if (report.examples.length < 5) report.examples.push(`float64 ${d} at byte ${o}`)
      }
      const a = view.getFloat32(o, true)
      const succ = next32.get(a)
      if (succ?.has(view.getFloat32(o + 4, true))) {
        report.float32Pairs++
        if (report.examples.length < 5) report.examples.push(`float32 pair starting ${a} at byte ${o}`)
      }
    }
    if (data.text) {
      const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1')
      for (const m of text.matchAll(/-?\d+\.\d{4,}/g)) {
        if (data.text.has(m[0])) {
          report.text++
          if (report.examples.length < 5) report.examples.push(`text ${m[0]}`)
        }
      }
    }
    for (const run of labelRuns) {
      if (Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).indexOf(Buffer.from(run)) >= 0)
        report.labels++
    }
  }
  return report
}
