/**
 * Searches captured traffic for a party's raw values: each feature value as a little-endian float64, pairs of
 * consecutive values of a column as float32 (a single float32 is too short to tell from random bytes), the
 * values' decimal text as written in the file, and runs of labels as bytes, float64 or text.
 *
 * Values whose binary encoding is mostly zero bytes (short dyadic fractions such as 29/64) are skipped: such
 * byte patterns also occur in structured data (ciphertext headers, small integers) and would be reported
 * without being leaks. Every offset of every message is examined, with a 24-bit prefilter on the first four
 * bytes so that gigabytes of ciphertext scan in seconds.
 */
export interface LeakReport {
  float64: number
  float32Pairs: number
  text: number
  labels: number
  examples: string[]
}

const PREFILTER_BITS = 24

function prefilterSlot(u32: number): number {
  return Math.imul(u32, 0x9e3779b1) >>> (32 - PREFILTER_BITS)
}

function zeroBytes(bytes: Uint8Array): number {
  let z = 0
  for (const b of bytes) if (b === 0) z++
  return z
}

export function findLeaks(
  traffic: Uint8Array[],
  data: { X: Float64Array; rows: number; cols: number; y?: Uint8Array; text?: Set<string> },
): LeakReport {
  const report: LeakReport = { float64: 0, float32Pairs: 0, text: 0, labels: 0, examples: [] }
  const f64 = new Set<number>()
  const next32 = new Map<number, Set<number>>()
  const filter = new Uint8Array(1 << (PREFILTER_BITS - 3))
  const mark = (u32: number) => {
    const s = prefilterSlot(u32)
    filter[s >>> 3] |= 1 << (s & 7)
  }
  const b8 = new Uint8Array(8)
  const v8 = new DataView(b8.buffer)
  for (let j = 0; j < data.cols; j++) {
    for (let i = 0; i < data.rows; i++) {
      const v = data.X[i * data.cols + j]
      v8.setFloat64(0, v, true)
      if (zeroBytes(b8) < 3) {
        f64.add(v)
        mark(v8.getUint32(0, true))
      }
      if (i + 1 < data.rows) {
        v8.setFloat32(0, v, true)
        v8.setFloat32(4, data.X[(i + 1) * data.cols + j], true)
        if (zeroBytes(b8) < 3) {
          const a = v8.getFloat32(0, true)
          const succ = next32.get(a) ?? new Set<number>()
          next32.set(a, succ)
          succ.add(v8.getFloat32(4, true))
          mark(v8.getUint32(0, true))
        }
      }
    }
  }
  const labelRuns: Uint8Array[] = []
  if (data.y && data.y.length >= 64) {
    const y = data.y.subarray(0, 64)
    labelRuns.push(Uint8Array.from(y))
    labelRuns.push(new TextEncoder().encode(Array.from(y.subarray(0, 32)).join(',')))
  }
  for (const buf of traffic) {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    for (let o = 0; o + 8 <= buf.byteLength; o++) {
      const s = prefilterSlot(view.getUint32(o, true))
      if ((filter[s >>> 3] & (1 << (s & 7))) === 0) continue
      const d = view.getFloat64(o, true)
      if (f64.has(d)) {
        report.float64++
        if (report.examples.length < 5) report.examples.push(`float64 ${d} at byte ${o}`)
      }
      const succ = next32.get(view.getFloat32(o, true))
      if (succ?.has(view.getFloat32(o + 4, true))) {
        report.float32Pairs++
        if (report.examples.length < 5) report.examples.push(`float32 pair at byte ${o}`)
      }
    }
    const bytes = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
    if (data.text) {
      for (const m of bytes.toString('latin1').matchAll(/-?\d+\.\d{4,}/g)) {
        if (data.text.has(m[0])) {
          report.text++
          if (report.examples.length < 5) report.examples.push(`text ${m[0]}`)
        }
      }
    }
    for (const run of labelRuns) if (bytes.indexOf(Buffer.from(run)) >= 0) report.labels++
  }
  return report
}
