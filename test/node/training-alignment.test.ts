import { describe, expect, it } from 'vitest'
import { createMemoryChannels } from '../../crypto/channel.ts'
import type { SyndicateError } from '../../crypto/errors.ts'
import {
  agreeOnAlignment,
  alignedRows,
  aloneModelKind,
  storedAlignmentProblem,
} from '../../node/jobs/training.ts'

const ref = { job: 'psi-1', party: 'lender-b', dataset: 'credit' }
const fileIds = ['c1', 'c2', 'c3', 'c4', 'c5']

describe('reusing a psi job alignment', () => {
  it('maps the aligned ids to the dataset rows in the alignment order', () => {
    const rows = alignedRows({ dataset: 'credit', ids: ['c4', 'c1', 'c5'] }, ref, fileIds)
    expect(Array.from(rows)).toEqual([3, 0, 4])
  })

  it('refuses a missing record, a training split, another dataset and a changed file, naming job and party', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [undefined, 'ERR_ALIGNMENT_UNKNOWN', /lender-b holds no alignment from job psi-1/],
      // What a train job stores under its own id: its ids and split, no dataset. Not a PSI alignment.
      [{ ids: ['c1'], test: [0] }, 'ERR_ALIGNMENT_UNKNOWN', /job psi-1 left no PSI alignment on lender-b/],
      [
        { dataset: 'other', ids: ['c1'] },
        'ERR_ALIGNMENT_MISMATCH',
        /psi job psi-1 aligned dataset other on lender-b, not credit/,
      ],
      [
        { dataset: 'credit', ids: ['c1', 'gone'] },
        'ERR_ALIGNMENT_STALE',
        /customer gone of psi job psi-1.*no longer in dataset credit on lender-b/,
      ],
    ]
    for (const [stored, code, message] of cases) {
      let err: SyndicateError | undefined
      try {
        alignedRows(stored, ref, fileIds)
      } catch (e) {
        err = e as SyndicateError
      }
      expect(err?.code).toBe(code)
      expect(err?.message).toMatch(message)
      expect(err?.details).toMatchObject({ job: 'psi-1', party: 'lender-b' })
    }
    // The approval check sees the same problems, except the file's rows (it does not load the dataset).
    expect(storedAlignmentProblem(undefined, ref)?.code).toBe('ERR_ALIGNMENT_UNKNOWN')
    expect(storedAlignmentProblem({ dataset: 'credit', ids: ['gone'] }, ref)).toBeUndefined()
  })

  it('all parties agree when their id lists are equal, and all fail naming the party whose list differs', async () => {
    const names = ['bank-a', 'lender-b', 'insurer-c']
    const ids = ['c1', 'c2', 'c3']
    const ok = createMemoryChannels(names)
    await Promise.all(
      names.map((n) => agreeOnAlignment({ channel: ok.get(n)!, self: n }, 'bank-a', 'psi-1', ids)),
    )
    // Same customers, another order: a different alignment (rows would not line up across parties).
    const swapped = ['c2', 'c1', 'c3']
    for (const [odd, held] of [
      ['lender-b', { 'bank-a': ids, 'lender-b': swapped, 'insurer-c': ids }],
      // The two others agree with each other, not with the label holder: the holder is the odd one.
      ['bank-a', { 'bank-a': swapped, 'lender-b': ids, 'insurer-c': ids }],
    ] as const) {
      const ch = createMemoryChannels(names)
      const results = await Promise.allSettled(
        names.map((n) =>
          agreeOnAlignment({ channel: ch.get(n)!, self: n }, 'bank-a', 'psi-1', held[n as keyof typeof held]),
        ),
      )
      for (const r of results) {
        expect(r.status).toBe('rejected')
        const e = (r as PromiseRejectedResult).reason as SyndicateError
        expect(e.code).toBe('ERR_ALIGNMENT_MISMATCH')
        expect(e.message).toMatch(new RegExp(`psi job psi-1 held by ${odd} differs from the other parties'`))
        expect(e.details).toMatchObject({ parties: [odd] })
      }
    }
  })

  it('the label holder alone trains the job model family', () => {
    expect(aloneModelKind('vertical-ss-lr')).toBe('lr')
    expect(aloneModelKind('vertical-he-lr')).toBe('lr')
    expect(aloneModelKind('secureboost')).toBe('gbdt')
    expect(aloneModelKind('vertical-split-nn')).toBe('mlp')
  })
})
