import { describe, expect, it } from 'vitest'
import { createMemoryChannels, ERR_CHANNEL_CLOSED, ERR_UNKNOWN_PARTY } from '../../crypto/channel.ts'
import { isSyndicateError } from '../../crypto/errors.ts'

describe('in-memory party channel', () => {
  it('delivers by (sender, tag) regardless of arrival order', async () => {
    const ch = createMemoryChannels(['a', 'b', 'c'])
    const a = ch.get('a')!
    const b = ch.get('b')!
    const c = ch.get('c')!
    const second = b.recv('a', 't2')
    await a.send('b', 't1', new Uint8Array([1]))
    await a.send('b', 't2', new Uint8Array([2]))
    await c.send('b', 't1', new Uint8Array([3]))
    expect(await second).toEqual(new Uint8Array([2]))
    expect(await b.recv('c', 't1')).toEqual(new Uint8Array([3]))
    expect(await b.recv('a', 't1')).toEqual(new Uint8Array([1]))
    expect(a.stats()).toMatchObject({ bytesSent: 2, messagesSent: 2 })
    expect(b.stats()).toMatchObject({ bytesReceived: 3, messagesReceived: 3 })
  })

  it('copies payloads so the sender cannot mutate what the receiver holds', async () => {
    const ch = createMemoryChannels(['a', 'b'])
    const buf = new Uint8Array([7])
    await ch.get('a')!.send('b', 'x', buf)
    buf[0] = 9
    expect(await ch.get('b')!.recv('a', 'x')).toEqual(new Uint8Array([7]))
  })

  it('rejects unknown parties and fails pending receives on close', async () => {
    const ch = createMemoryChannels(['a', 'b'])
    const a = ch.get('a')!
    await expect(a.send('z', 'x', new Uint8Array())).rejects.toSatisfy((e) =>
      isSyndicateError(e, ERR_UNKNOWN_PARTY),
    )
    const pending = a.recv('b', 'never')
    a.close(new Error('party b dropped'))
    await expect(pending).rejects.toSatisfy((e) => isSyndicateError(e, ERR_CHANNEL_CLOSED))
    await expect(a.recv('b', 'later')).rejects.toThrow(/party b dropped/)
  })
})
