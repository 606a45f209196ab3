import { SyndicateError } from './errors.ts'

/**
 * Canonical JSON: object keys sorted, no insignificant whitespace, `undefined` members dropped. Used wherever
 * bytes are signed or hashed, so that two implementations serialising the same value agree byte for byte.
 * Non-finite numbers have no JSON form and are refused rather than silently becoming null.
 */
export function canonicalJson(value: unknown): string {
  return serialise(value, '$')
}

export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value))
}

/**
 * What gets signed: a domain-separation line `syndicate/<domain>` and the value's canonical JSON, so that a
 * signature made for one kind of object never verifies as another.
 */
export function signingBytes(domain: string, value: unknown): Uint8Array {
  const prefix = new TextEncoder().encode(`syndicate/${domain}\n`)
  const body = canonicalBytes(value)
  const out = new Uint8Array(prefix.length + body.length)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}

function serialise(value: unknown, path: string): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) {
        throw new SyndicateError('ERR_NOT_CANONICAL', `cannot serialise non-finite number at ${path}`, {
          path,
        })
      }
      return JSON.stringify(value)
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v, i) => serialise(v, `${path}[${i}]`)).join(',')}]`
      const keys = Object.keys(value as object)
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .sort()
      const parts = keys.map(
        (k) => `${JSON.stringify(k)}:${serialise((value as Record<string, unknown>)[k], `${path}.${k}`)}`,
      )
      return `{${parts.join(',')}}`
    }
    default:
      throw new SyndicateError('ERR_NOT_CANONICAL', `cannot serialise ${typeof value} at ${path}`, { path })
  }
}
