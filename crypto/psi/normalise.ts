import { SyndicateError } from '../errors.ts'

/**
 * Id normalisation before hashing: two institutions only match a customer if they hash the same bytes, so the
 * job's schema says how ids are written (e.g. a national id stored as `" 00123 "` by one and `123` by another).
 * Every party of a job must use the same options; the job spec carries them.
 */
export interface NormaliseOptions {
  /** Strip leading and trailing whitespace (default true). */
  trim?: boolean
  /** Case folding (default 'lower'). */
  case?: 'lower' | 'upper' | 'preserve'
  /** Unicode normal form applied first (default 'NFKC', so full-width digits and ligatures match). */
  unicode?: 'NFC' | 'NFKC' | 'none'
  /** Characters removed everywhere, e.g. ' -' for phone numbers or IBANs (default none). */
  strip?: string
  /**
   * Canonical decimal form: '+007.50' → '7.5', '1e3' → '1000', '-0' → '0'. Exact (no floating point), so
   * 20-digit ids survive. Ids that are not numbers are rejected (default false).
   */
  numeric?: boolean
}

export const ERR_PSI_BAD_ID = 'ERR_PSI_BAD_ID'

const NUMBER = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/

/** Normalises one id; throws ERR_PSI_BAD_ID for ids that are empty or (with `numeric`) not numbers. */
export function normaliseId(id: string, opts: NormaliseOptions = {}): string {
  let s = opts.unicode === 'none' ? id : id.normalize(opts.unicode ?? 'NFKC')
  if (opts.trim ?? true) s = s.trim()
  if (opts.strip) for (const ch of opts.strip) s = s.replaceAll(ch, '')
  const fold = opts.case ?? 'lower'
  if (fold === 'lower') s = s.toLowerCase()
  else if (fold === 'upper') s = s.toUpperCase()
  if (opts.numeric) s = canonicalDecimal(s)
  if (s.length === 0)
    throw new SyndicateError(ERR_PSI_BAD_ID, 'an id is empty after normalisation; drop or fix such rows')
  return s
}

/** Exact canonical decimal of a numeric string: no sign for zero, no leading or trailing zeros, no exponent. */
export function canonicalDecimal(s: string): string {
  const m = NUMBER.exec(s)
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) {
    throw new SyndicateError(
      ERR_PSI_BAD_ID,
      `id ${JSON.stringify(s)} is not a number but the schema says numeric`,
    )
  }
  const exp = m[4] ? Number(m[4]) : 0
  if (!Number.isSafeInteger(exp) || Math.abs(exp) > 1000) {
    throw new SyndicateError(ERR_PSI_BAD_ID, `id ${JSON.stringify(s)} has an exponent out of range`)
  }
  const frac = m[3] ?? ''
  // The value is digits × 10^(exp - frac.length); place the decimal point accordingly.
  let digits = (m[2] + frac).replace(/^0+/, '')
  let point = digits.length + exp - frac.length // digits left of the point
  if (digits === '') return '0'
  if (point <= 0) {
    digits = '0'.repeat(-point + 1) + digits
    point = 1
  } else if (point > digits.length) {
    digits += '0'.repeat(point - digits.length)
  }
  const intPart = digits.slice(0, point)
  const fracPart = digits.slice(point).replace(/0+$/, '')
  return (m[1] === '-' ? '-' : '') + intPart + (fracPart ? `.${fracPart}` : '')
}

/** Normalises every id and rejects duplicates, which would make the alignment ambiguous. */
export function normaliseIds(ids: readonly string[], opts: NormaliseOptions = {}): string[] {
  const out = new Array<string>(ids.length)
  const seen = new Map<string, number>()
  for (let i = 0; i < ids.length; i++) {
    let s: string
    try {
      s = normaliseId(ids[i], opts)
    } catch (e) {
      throw new SyndicateError(ERR_PSI_BAD_ID, `row ${i}: ${(e as Error).message}`, { row: i }, { cause: e })
    }
    const prev = seen.get(s)
    if (prev !== undefined) {
      throw new SyndicateError(
        ERR_PSI_BAD_ID,
        `rows ${prev} and ${i} have the same id after normalisation; deduplicate the dataset before PSI`,
        { rows: [prev, i] },
      )
    }
    seen.set(s, i)
    out[i] = s
  }
  return out
}
