import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { canonicalDecimal, ERR_PSI_BAD_ID, normaliseId, normaliseIds } from '../../../crypto/psi/index.ts'

describe('id normalisation', () => {
  it('trims and lower-cases by default, folds full-width characters', () => {
    expect(normaliseId('  AbC-12 ')).toBe('abc-12')
    expect(normaliseId('ＡＢ１')).toBe('ab1')
    expect(normaliseId(' AbC ', { trim: false, case: 'preserve' })).toBe(' AbC ')
    expect(normaliseId('abc', { case: 'upper' })).toBe('ABC')
  })

  it('strips listed characters', () => {
    expect(normaliseId('+44 (20) 7946-0018', { strip: ' ()-+' })).toBe('442079460018')
  })

  it('writes numbers in one canonical decimal form, exactly', () => {
    const cases: [string, string][] = [
      ['00123', '123'],
      ['+007.50', '7.5'],
      ['1e3', '1000'],
      ['1.5E-2', '0.015'],
      ['-0', '0'],
      ['-0.000', '0'],
      ['-.5', '-0.5'],
      ['12345678901234567890123', '12345678901234567890123'],
      ['120', '120'],
      ['12.', '12'],
    ]
    for (const [raw, want] of cases) expect(canonicalDecimal(raw)).toBe(want)
    expect(normaliseId(' 000123 ', { numeric: true })).toBe(normaliseId('123.0', { numeric: true }))
  })

  it('rejects non-numbers under numeric, empty ids and duplicates, naming the rows', () => {
    for (const bad of ['12a', '.', '', '1e', '--1']) {
      expect(() => canonicalDecimal(bad)).toThrow(expect.objectContaining({ code: ERR_PSI_BAD_ID }))
    }
    try {
      normaliseIds(['a', ' A', 'b'])
      expect.unreachable()
    } catch (e) {
      expect(isSyndicateError(e, ERR_PSI_BAD_ID)).toBe(true)
      expect((e as { details: { rows: number[] } }).details.rows).toEqual([0, 1])
    }
    expect(() => normaliseIds(['x', '   '])).toThrow(/row 1/)
  })
})
