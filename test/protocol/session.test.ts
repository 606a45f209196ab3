import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import { decodeRecords, encodeRecord } from '../../protocol/session.ts'

const utf8 = new TextEncoder()
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts))
const invalid = (e: unknown) => isSyndicateError(e, 'ERR_INVALID_MESSAGE')

describe('session records', () => {
  it('round-trips several records of several sessions in one frame, in order', () => {
    const payload = new Uint8Array(300).map((_, i) => i & 0xff)
    const frame = concat(
      encodeRecord(0, 'job:a', 'bank-a', utf8.encode('lr/epoch1/grad'), payload),
      encodeRecord(1, 'job:a', 'bank-a', new Uint8Array(0), new Uint8Array(0)),
      encodeRecord(2, 'job:é', '', new Uint8Array(0), utf8.encode('not opened')),
    )
    const records = decodeRecords(frame, 1024)
    expect(records.map((r) => [r.kind, r.session, r.party, r.tag])).toEqual([
      [0, 'job:a', 'bank-a', 'lr/epoch1/grad'],
      [1, 'job:a', 'bank-a', ''],
      [2, 'job:é', '', ''],
    ])
    expect(records[0].payload).toEqual(payload)
    expect(records.reduce((n, r) => n + r.size, 0)).toBe(frame.byteLength)
    // Payloads are copies: the frame's memory can be reused.
    frame.fill(0)
    expect(records[0].payload).toEqual(payload)
  })

  it('refuses truncated, unknown, oversized and non-UTF-8 records', () => {
    const ok = encodeRecord(0, 's', 'p', utf8.encode('t'), new Uint8Array(10))
    for (let cut = 1; cut < ok.byteLength; cut++)
      expect(() => decodeRecords(ok.subarray(0, cut), 1024)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_MESSAGE' }),
      )
    const unknown = ok.slice()
    unknown[0] = 9
    expect(() => decodeRecords(unknown, 1024)).toThrowError(/unknown kind/)
    // tag + payload + 2 over the bound: refused even though the frame holds it.
    expect(() => decodeRecords(ok, 12)).toThrow(expect.objectContaining({ code: 'ERR_MESSAGE_TOO_LARGE' }))
    expect(decodeRecords(ok, 13)).toHaveLength(1)
    const longSession = encodeRecord(0, 's'.repeat(201), 'p', new Uint8Array(0), new Uint8Array(0))
    expect(() => decodeRecords(longSession, 1024)).toThrowError(/too long/)
    const noSession = encodeRecord(0, '', 'p', new Uint8Array(0), new Uint8Array(0))
    expect(() => decodeRecords(noSession, 1024)).toThrowError(/without a session/)
    const badUtf8 = encodeRecord(0, 's', 'p', new Uint8Array([0xff, 0xfe]), new Uint8Array(0))
    try {
      decodeRecords(badUtf8, 1024)
      expect.unreachable()
    } catch (e) {
      expect(invalid(e)).toBe(true)
    }
  })
})
