import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalBytes, canonicalJson, inCanonicalOrder, signingBytes } from '../../crypto/canonical.ts'
import { isSyndicateError } from '../../crypto/errors.ts'

/** Keys in reverse order, so that only the sorting walk can produce canonical JSON from it. */
function reversed(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map(reversed)
  return Object.fromEntries(
    Object.keys(v)
      .sort()
      .reverse()
      .map((k) => [k, reversed((v as Record<string, unknown>)[k])]),
  )
}

describe('canonical JSON', () => {
  it('sorts keys at every depth, drops undefined members, and keeps no whitespace', () => {
    expect(canonicalJson({ b: [{ z: 1, a: 'x' }], a: undefined, c: null, aa: true })).toBe(
      '{"aa":true,"b":[{"a":"x","z":1}],"c":null}',
    )
  })

  it('the sorted-key fast path and the sorting walk give the same bytes for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const walked = canonicalJson(reversed(v))
        expect(canonicalJson(inCanonicalOrder(v))).toBe(walked)
        expect(JSON.parse(walked)).toEqual(JSON.parse(JSON.stringify(v)))
      }),
    )
  })

  it('refuses non-finite numbers, undefined in arrays and non-JSON objects, naming where', () => {
    const bad: Array<[unknown, string]> = [
      [{ a: { b: [1, Number.NaN] } }, '$.a.b[1]'],
      [[undefined], '$[0]'],
      [{ f: () => 1 }, '$.f'],
      [{ big: 1n }, '$.big'],
    ]
    for (const [value, at] of bad) {
      let err: unknown
      try {
        canonicalJson(value)
      } catch (e) {
        err = e
      }
      expect(isSyndicateError(err, 'ERR_NOT_CANONICAL'), String(err)).toBe(true)
      expect((err as Error).message).toContain(at)
    }
  })

  it('does not take objects with their own JSON form (a Date) for plain ones', () => {
    expect(canonicalJson({ at: new Date(0) })).toBe('{"at":{}}')
  })

  it('encodes UTF-8 and prefixes the signing domain', () => {
    expect(Buffer.from(canonicalBytes({ é: 'ü' })).toString('utf8')).toBe('{"é":"ü"}')
    expect(Buffer.from(signingBytes('job/vote/v1', { b: 1, a: 2 })).toString('utf8')).toBe(
      'syndicate/job/vote/v1\n{"a":2,"b":1}',
    )
  })
})
