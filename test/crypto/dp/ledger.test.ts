import { describe, expect, it } from 'vitest'
import { PrivacyLedger } from '../../../crypto/dp/ledger.ts'

const at = '2026-11-21T20:00:00Z'
const code = (c: string) => expect.objectContaining({ code: c })

describe('privacy budget ledger', () => {
  it('accepts jobs until the budget is spent, then refuses with a clear error', () => {
    const ledger = new PrivacyLedger()
    ledger.setBudget('bank-a/loans', { epsilon: 1, delta: 1e-5 })
    // Ten spends of 0.1 add up to 0.9999999999999999 in floats: the whole budget must still be usable.
    for (let i = 0; i < 10; i++) {
      ledger.check('bank-a/loans', { epsilon: 0.1, delta: 1e-6 })
      ledger.record('bank-a/loans', { jobId: `job-${i}`, epsilon: 0.1, delta: 1e-6, at })
    }
    expect(ledger.remaining('bank-a/loans').epsilon).toBeLessThan(1e-9)
    let err: unknown
    try {
      ledger.check('bank-a/loans', { epsilon: 0.01, delta: 0 })
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ERR_DP_BUDGET_EXCEEDED', details: { datasetId: 'bank-a/loans' } })
    expect((err as Error).message).toMatch(/left of its privacy budget/)
    expect(() => ledger.record('bank-a/loans', { jobId: 'job-x', epsilon: 0.01, delta: 0, at })).toThrow(
      code('ERR_DP_BUDGET_EXCEEDED'),
    )
    expect(ledger.spends('bank-a/loans')).toHaveLength(10)
  })

  it('refuses on delta as well as epsilon, and on any dataset of a multi-dataset job', () => {
    const ledger = new PrivacyLedger()
    ledger.setBudget('a', { epsilon: 5, delta: 1e-6 })
    ledger.setBudget('b', { epsilon: 1, delta: 1e-5 })
    expect(() => ledger.check('a', { epsilon: 1, delta: 2e-6 })).toThrow(code('ERR_DP_BUDGET_EXCEEDED'))
    ledger.check(['a', 'b'], { epsilon: 1, delta: 1e-6 })
    expect(() => ledger.check(['a', 'b'], { epsilon: 2, delta: 1e-7 })).toThrow(
      expect.objectContaining({ details: expect.objectContaining({ datasetId: 'b' }) }),
    )
    expect(() => ledger.check(['a', 'c'], { epsilon: 0.1, delta: 0 })).toThrow(code('ERR_DP_NO_BUDGET'))
  })

  it('refuses a second spend by the same job and invalid costs', () => {
    const ledger = new PrivacyLedger()
    ledger.setBudget('a', { epsilon: 5, delta: 1e-5 })
    ledger.record('a', { jobId: 'j1', epsilon: 1, delta: 0, at })
    expect(() => ledger.record('a', { jobId: 'j1', epsilon: 1, delta: 0, at })).toThrow(
      code('ERR_DP_DUPLICATE_SPEND'),
    )
    expect(() => ledger.check('a', { epsilon: -1, delta: 0 })).toThrow(code('ERR_DP_BAD_PARAMETER'))
    expect(() => ledger.check('a', { epsilon: Number.NaN, delta: 0 })).toThrow(code('ERR_DP_BAD_PARAMETER'))
    expect(() => ledger.setBudget('a', { epsilon: 1, delta: 1 })).toThrow(code('ERR_DP_BAD_PARAMETER'))
    expect(() => ledger.record('a', { jobId: '', epsilon: 1, delta: 0, at })).toThrow(
      code('ERR_DP_BAD_PARAMETER'),
    )
  })

  it('lowering a budget below what is spent blocks further jobs', () => {
    const ledger = new PrivacyLedger()
    ledger.setBudget('a', { epsilon: 3, delta: 1e-5 })
    ledger.record('a', { jobId: 'j1', epsilon: 2, delta: 0, at })
    ledger.setBudget('a', { epsilon: 1, delta: 1e-5 })
    expect(ledger.remaining('a').epsilon).toBe(0)
    expect(() => ledger.check('a', { epsilon: 0.001, delta: 0 })).toThrow(code('ERR_DP_BUDGET_EXCEEDED'))
  })

  it('serialises canonically and restores; refuses corrupt state', () => {
    const ledger = new PrivacyLedger()
    ledger.setBudget('z', { epsilon: 2, delta: 1e-5 })
    ledger.setBudget('a', { epsilon: 1, delta: 1e-6 })
    ledger.record('z', { jobId: 'j1', epsilon: 0.5, delta: 1e-6, at })
    const text = ledger.serialize()
    const back = PrivacyLedger.parse(text)
    expect(back.serialize()).toBe(text)
    expect(back.spent('z')).toEqual({ epsilon: 0.5, delta: 1e-6 })
    expect(back.datasets()).toEqual(['a', 'z'])
    for (const bad of [
      'nope',
      '{}',
      '{"version":2,"datasets":{}}',
      '{"version":1,"datasets":{"a":{"budget":{"epsilon":-1,"delta":0},"spends":[]}}}',
      '{"version":1,"datasets":{"a":{"budget":{"epsilon":1,"delta":0},"spends":[{"jobId":"j","epsilon":1}]}}}',
    ]) {
      expect(() => PrivacyLedger.parse(bad)).toThrow(code('ERR_DP_LEDGER_CORRUPT'))
    }
  })
})
