import { describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../crypto/errors.ts'
import { frame, readFrames } from '../../protocol/framing.ts'

async function* chunks(parts: Uint8Array[]) {
  for (const p of parts) yield p
}

async function collect(parts: Uint8Array[], max: number) {
  const out: Uint8Array[] = []
  for await (const f of readFrames(chunks(parts), max)) out.push(f)
  return out
}

describe('length-prefixed framing', () => {
  it('round-trips frames split arbitrarily across chunks', async () => {
    const a = frame(new Uint8Array([1, 2, 3])).subarray()
    const b = frame(new Uint8Array(0)).subarray()
    const c = frame(new Uint8Array(1000).fill(7)).subarray()
    const all = new Uint8Array([...a, ...b, ...c])
    for (const cut of [1, 3, 4, 5, 9, 500]) {
      const parts: Uint8Array[] = []
      for (let i = 0; i < all.length; i += cut) parts.push(all.subarray(i, i + cut))
      const frames = await collect(parts, 2000)
      expect(frames.map((f) => f.length)).toEqual([3, 0, 1000])
      expect(frames[0]).toEqual(new Uint8Array([1, 2, 3]))
    }
  })

  it('rejects an oversized frame from its header, before the payload arrives', async () => {
    const header = new Uint8Array([0x10, 0, 0, 0]) // announces 256 MiB
    await expect(collect([header], 1024)).rejects.toSatisfy((e) =>
      isSyndicateError(e, 'ERR_MESSAGE_TOO_LARGE'),
    )
  })

  it('rejects a stream that ends inside a frame', async () => {
    const f = frame(new Uint8Array(10)).subarray()
    await expect(collect([f.subarray(0, 8)], 1024)).rejects.toSatisfy((e) =>
      isSyndicateError(e, 'ERR_INVALID_MESSAGE'),
    )
  })
})
