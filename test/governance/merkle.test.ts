import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  consistencyProofRanges,
  EMPTY_ROOT,
  Frontier,
  hashRanges,
  inclusionProofRanges,
  leafHash,
  type NodeId,
  nodeHash,
  rootFromInclusionProof,
  rootFromLeafHashes,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
} from '../../governance/merkle.ts'

const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'))
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex')

// Known answers from transparency-dev/merkle (rfc6962/rfc6962_test.go and proof/verify_test.go, Apache-2.0),
// the reference implementation behind Certificate Transparency.
const LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(hex)
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
]
// [leaf index (0-based), tree size, proof]
const INCLUSION: Array<[number, number, string[]]> = [
  [
    0,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    5,
    8,
    [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [2, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
  [
    1,
    5,
    [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
]
const CONSISTENCY: Array<[number, number, string[]]> = [
  [1, 1, []],
  [
    1,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    6,
    8,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [
    2,
    5,
    [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
  [
    6,
    7,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
]

/** MTH exactly as RFC 6962 §2.1 defines it, recursively: the independent reference for everything else. */
function referenceMth(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return EMPTY_ROOT
  if (leaves.length === 1) return leafHash(leaves[0])
  const k = splitPoint(leaves.length)
  return nodeHash(referenceMth(leaves.slice(0, k)), referenceMth(leaves.slice(k)))
}

/** A node reader over every perfect subtree of `leaves`, as the log's store keeps them. */
function memoryTree(leaves: readonly Uint8Array[]) {
  const nodes = new Map<string, Uint8Array>()
  const frontier = new Frontier()
  for (const l of leaves)
    for (const n of frontier.append(leafHash(l))) nodes.set(`${n.level}/${n.index}`, n.hash)
  const read = async (ids: readonly NodeId[]) =>
    ids.map((id) => {
      const h = nodes.get(`${id.level}/${id.index}`)
      if (!h) throw new Error(`missing node ${id.level}/${id.index}`)
      return h
    })
  return {
    read,
    inclusion: (i: number, n: number) => hashRanges(inclusionProofRanges(i, n), read),
    consistency: (m: number, n: number) => hashRanges(consistencyProofRanges(m, n), read),
  }
}

const flipBit = (proof: Uint8Array[], i: number, bit: number) =>
  proof.map((p, j) => {
    if (j !== i) return p
    const q = p.slice()
    q[bit >> 3] ^= 1 << (bit & 7)
    return q
  })

describe('RFC 6962 hashing: known answers', () => {
  it('hashes the empty tree, leaves and nodes as transparency-dev does', () => {
    expect(toHex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(toHex(leafHash(new Uint8Array()))).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    )
    expect(toHex(leafHash(new TextEncoder().encode('L123456')))).toBe(
      '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56',
    )
    const enc = new TextEncoder()
    expect(toHex(nodeHash(enc.encode('N123'), enc.encode('N456')))).toBe(
      'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb',
    )
  })

  it('computes the roots of every prefix of the 8-leaf reference tree, incrementally', () => {
    const frontier = new Frontier()
    LEAVES.forEach((leaf, i) => {
      frontier.append(leafHash(leaf))
      expect(toHex(frontier.root())).toBe(ROOTS[i])
      expect(toHex(referenceMth(LEAVES.slice(0, i + 1)))).toBe(ROOTS[i])
    })
  })

  it('generates and verifies the reference inclusion proofs', async () => {
    const tree = memoryTree(LEAVES)
    for (const [index, size, proofHex] of INCLUSION) {
      const proof = await tree.inclusion(index, size)
      expect(proof.map(toHex)).toEqual(proofHex)
      expect(verifyInclusion(index, size, leafHash(LEAVES[index]), proof, hex(ROOTS[size - 1]))).toBe(true)
      expect(verifyInclusion(index + 1, size, leafHash(LEAVES[index]), proof, hex(ROOTS[size - 1]))).toBe(
        false,
      )
      expect(verifyInclusion(index, size * 2, leafHash(LEAVES[index]), proof, hex(ROOTS[size - 1]))).toBe(
        false,
      )
      expect(
        verifyInclusion(index, size, leafHash(LEAVES[index]), [...proof, EMPTY_ROOT], hex(ROOTS[size - 1])),
      ).toBe(false)
    }
  })

  it('generates and verifies the reference consistency proofs', async () => {
    const tree = memoryTree(LEAVES)
    for (const [m, n, proofHex] of CONSISTENCY) {
      const proof = await tree.consistency(m, n)
      expect(proof.map(toHex)).toEqual(proofHex)
      expect(verifyConsistency(m, n, proof, hex(ROOTS[m - 1]), hex(ROOTS[n - 1]))).toBe(true)
      if (proof.length > 0) {
        expect(verifyConsistency(m, n, proof, hex(ROOTS[n - 1]), hex(ROOTS[m - 1]))).toBe(false)
        expect(verifyConsistency(m, n, proof.slice(0, -1), hex(ROOTS[m - 1]), hex(ROOTS[n - 1]))).toBe(false)
        expect(verifyConsistency(m, n, [proof[0], ...proof], hex(ROOTS[m - 1]), hex(ROOTS[n - 1]))).toBe(
          false,
        )
      }
    }
  })

  it('handles the trivial consistency cases as RFC 9162 and transparency-dev do', () => {
    const a = hex(ROOTS[0])
    const b = hex(ROOTS[1])
    expect(verifyConsistency(0, 0, [], a, a)).toBe(true)
    expect(verifyConsistency(0, 5, [], a, b)).toBe(true)
    expect(verifyConsistency(0, 5, [a], a, b)).toBe(false)
    expect(verifyConsistency(3, 3, [], a, b)).toBe(false)
    expect(verifyConsistency(3, 3, [], a, a)).toBe(true)
    expect(verifyConsistency(2, 1, [], a, b)).toBe(false)
    expect(verifyConsistency(1, 2, [], a, b)).toBe(false)
    expect(rootFromInclusionProof(0, 0, a, [])).toBeUndefined()
    expect(verifyInclusion(0, 1, a, [], a)).toBe(true)
  })
})

describe('RFC 6962 proofs: properties over random trees', () => {
  const treeArb = fc
    .array(fc.uint8Array({ minLength: 0, maxLength: 12 }), { minLength: 1, maxLength: 140 })
    // Distinct leaves (index prefix), so that a proof for one index cannot legitimately fit another.
    .map((ls) => ls.map((l, i) => Uint8Array.from([i & 0xff, i >> 8, ...l])))
    .chain((leaves) =>
      fc.record({
        leaves: fc.constant(leaves),
        m: fc.integer({ min: 0, max: leaves.length - 1 }),
        bit: fc.integer({ min: 0, max: 255 }),
      }),
    )

  it('incremental roots equal the recursive definition', () => {
    fc.assert(
      fc.property(treeArb, ({ leaves }) => {
        expect(toHex(rootFromLeafHashes(leaves.map(leafHash)))).toBe(toHex(referenceMth(leaves)))
      }),
      { numRuns: 150 },
    )
  })

  it('every inclusion proof verifies and any tampering fails', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, async ({ leaves, m, bit }) => {
        const tree = memoryTree(leaves)
        const n = leaves.length
        const root = referenceMth(leaves)
        const leaf = leafHash(leaves[m])
        const proof = await tree.inclusion(m, n)
        expect(verifyInclusion(m, n, leaf, proof, root)).toBe(true)
        for (let i = 0; i < proof.length; i++)
          expect(verifyInclusion(m, n, leaf, flipBit(proof, i, bit), root)).toBe(false)
        expect(verifyInclusion(m, n, flipBit([leaf], 0, bit)[0], proof, root)).toBe(false)
        if (n > 1) expect(verifyInclusion((m + 1) % n, n, leaf, proof, root)).toBe(false)
        if (proof.length > 0) expect(verifyInclusion(m, n, leaf, proof.slice(1), root)).toBe(false)
        expect(verifyInclusion(m, n, leaf, [...proof, root], root)).toBe(false)
        // A proof for an older tree size verifies against that size's root.
        const older = m + 1
        expect(
          verifyInclusion(
            m,
            older,
            leaf,
            await tree.inclusion(m, older),
            referenceMth(leaves.slice(0, older)),
          ),
        ).toBe(true)
      }),
      { numRuns: 150 },
    )
  })

  it('every consistency proof verifies and any tampering fails', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, async ({ leaves, m, bit }) => {
        const tree = memoryTree(leaves)
        const n = leaves.length
        const from = m + 1
        const r1 = referenceMth(leaves.slice(0, from))
        const r2 = referenceMth(leaves)
        const proof = await tree.consistency(from, n)
        expect(verifyConsistency(from, n, proof, r1, r2)).toBe(true)
        for (let i = 0; i < proof.length; i++)
          expect(verifyConsistency(from, n, flipBit(proof, i, bit), r1, r2)).toBe(false)
        if (from < n) {
          expect(verifyConsistency(from, n, proof, flipBit([r1], 0, bit)[0], r2)).toBe(false)
          expect(verifyConsistency(from, n, proof, r1, flipBit([r2], 0, bit)[0])).toBe(false)
          expect(verifyConsistency(from, n, proof.slice(0, -1), r1, r2)).toBe(false)
          expect(verifyConsistency(from, n, [...proof, r2], r1, r2)).toBe(false)
        }
        // A different history of the same length (one leaf changed) is not consistent with the old root.
        if (from < n) {
          const forked = leaves.map((l, i) => (i === m ? flipBit([leafHash(l)], 0, bit)[0] : l))
          const forkTree = memoryTree(forked)
          const forkProof = await forkTree.consistency(from, n)
          expect(verifyConsistency(from, n, forkProof, r1, referenceMth(forked))).toBe(false)
        }
      }),
      { numRuns: 150 },
    )
  })

  it('stays correct past 32-bit tree sizes (no bitwise truncation)', async () => {
    // A tree too large to build whose leaves are all equal: a perfect subtree of height k then hashes to
    // P(k) = H(0x01 ‖ P(k-1) ‖ P(k-1)) wherever it sits, so every stored node is known exactly.
    const perfect = [leafHash(new Uint8Array([7]))]
    for (let k = 1; k < 64; k++) perfect.push(nodeHash(perfect[k - 1], perfect[k - 1]))
    const read = async (ids: readonly NodeId[]) => ids.map((id) => perfect[id.level])
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2 ** 33, max: Number.MAX_SAFE_INTEGER }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (size, f) => {
          const index = Math.min(size - 1, Math.floor(f * size))
          const [root] = await hashRanges([{ start: 0, end: size }], read)
          const [leaf] = await read([{ level: 0, index }])
          const proof = await hashRanges(inclusionProofRanges(index, size), read)
          expect(verifyInclusion(index, size, leaf, proof, root)).toBe(true)
          const [smallerRoot] = await hashRanges([{ start: 0, end: size - 1 }], read)
          expect(verifyInclusion(index, size, leaf, proof, smallerRoot)).toBe(false)
          const from = Math.max(1, index)
          const [fromRoot] = await hashRanges([{ start: 0, end: from }], read)
          const cons = await hashRanges(consistencyProofRanges(from, size), read)
          expect(verifyConsistency(from, size, cons, fromRoot, root)).toBe(true)
        },
      ),
      { numRuns: 30 },
    )
  })
})
