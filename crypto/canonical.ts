import { SyndicateError } from './errors.ts'

/**
 * Canonical JSON: object keys sorted, no insignificant whitespace, `undefined` members dropped. Used wherever
 * bytes are signed or hashed, so that two implementations serialising the same value agree byte for byte.
 * Non-finite numbers have no JSON form and are refused rather than silently becoming null.
 */
export function canonicalJson(value: unknown): string {
  // A value whose keys are already in order (parsed from canonical JSON, or built by inCanonicalOrder) is
  // serialised by the native JSON.stringify, byte for byte what the walk below would produce.
  return keysSorted(value) ? JSON.stringify(value) : serialise(value, [])
}

// Buffer.from encodes UTF-8 several times faster than TextEncoder on Node.
export function canonicalBytes(value: unknown): Uint8Array {
  return Buffer.from(canonicalJson(value), 'utf8')
}

/**
 * What gets signed: a domain-separation line `syndicate/<domain>` and the value's canonical JSON, so that a
 * signature made for one kind of object never verifies as another.
 */
export function signingBytes(domain: string, value: unknown): Uint8Array {
  return Buffer.from(`syndicate/${domain}\n${canonicalJson(value)}`, 'utf8')
}

/**
 * A copy of `value` whose objects list their keys in sorted order, undefined members dropped: its canonical
 * encoding is then plain JSON.stringify (the fast path above), however many times it is encoded.
 */
export function inCanonicalOrder<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(inCanonicalOrder) as T
  const out: Record<string, unknown> = {}
  const keys = Object.keys(value)
  // Objects built in order (most of them) skip the sort and its allocations.
  if (!keys.every((k, i) => i === 0 || keys[i - 1] < k)) keys.sort()
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k]
    if (v !== undefined) out[k] = inCanonicalOrder(v)
  }
  return out as T
}

/** True when JSON.stringify(v) is v's canonical JSON: plain objects with sorted keys, JSON values only. */
function keysSorted(v: unknown): boolean {
  if (v === null) return true
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(v)
    case 'object': {
      if (Array.isArray(v)) return v.every(keysSorted)
      const proto = Object.getPrototypeOf(v)
      if (proto !== Object.prototype && proto !== null) return false
      const keys = Object.keys(v)
      for (let i = 0; i < keys.length; i++) {
        if (i > 0 && !(keys[i - 1] < keys[i])) return false
        if (!keysSorted((v as Record<string, unknown>)[keys[i]])) return false
      }
      return true
    }
    default:
      return false
  }
}

/** `path` holds the keys down to `value`, for the error message only (joined only when one is thrown). */
function serialise(value: unknown, path: Array<string | number>): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw notCanonical(`cannot serialise non-finite number`, path)
      return JSON.stringify(value)
    case 'object': {
      const parts: string[] = []
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          path.push(i)
          parts.push(serialise(value[i], path))
          path.pop()
        }
        return `[${parts.join(',')}]`
      }
      const keys = Object.keys(value as object).sort()
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k]
        if (v === undefined) continue
        path.push(k)
        parts.push(`${JSON.stringify(k)}:${serialise(v, path)}`)
        path.pop()
      }
      return `{${parts.join(',')}}`
    }
    default:
      throw notCanonical(`cannot serialise ${typeof value}`, path)
  }
}

function notCanonical(what: string, path: ReadonlyArray<string | number>): SyndicateError {
  const at = `$${path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}`
  return new SyndicateError('ERR_NOT_CANONICAL', `${what} at ${at}`, { path: at })
}
