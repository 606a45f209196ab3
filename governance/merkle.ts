import { hash } from 'node:crypto'
import { SyndicateError } from '../crypto/errors.ts'

/**
 * RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification.
 *
 * Tree sizes and indices are JavaScript numbers limited to safe integers; bit operations are written with
 * arithmetic (`% 2`, `/ 2`) because JS bitwise operators truncate to 32 bits and a log may outgrow 2^31.
 */

export const HASH_BYTES = 32
export const ERR_MERKLE_RANGE = 'ERR_GOV_MERKLE_RANGE'

/** MTH({}) = SHA-256(""). */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0))

export function leafHash(entry: Uint8Array): Uint8Array {
  const input = Buffer.allocUnsafe(1 + entry.byteLength)
  input[0] = 0x00
  input.set(entry, 1)
  return sha256(input)
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const input = Buffer.allocUnsafe(1 + left.byteLength + right.byteLength)
  input[0] = 0x01
  input.set(left, 1)
  input.set(right, 1 + left.byteLength)
  return sha256(input)
}

/**
 * SHA-256 in one call, as a plain Uint8Array: a log hashes many short inputs, for which the one-shot
 * crypto.hash with the prefix copied in costs about two thirds of createHash().update()…digest().
 */
function sha256(input: Uint8Array): Uint8Array {
  const h = hash('sha256', input, 'buffer')
  return new Uint8Array(h.buffer, h.byteOffset, h.byteLength)
}

/** The largest power of two strictly smaller than n (n >= 2): RFC 6962's split point k. */
export function splitPoint(n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  let diff = 0
  for (let i = 0; i < a.byteLength; i++) diff |= a[i] ^ b[i]
  return diff === 0
}

function checkSize(name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new SyndicateError(ERR_MERKLE_RANGE, `${name} must be a non-negative safe integer, got ${n}`, {
      [name]: n,
    })
  }
}

/**
 * A half-open leaf range [start, end) whose MTH a proof needs. Every range the RFC 6962 recursion produces
 * starts at a multiple of the largest power of two not exceeding its length, so it is either a perfect
 * subtree or the right edge of one; `perfectNodes` decomposes it into stored perfect subtrees.
 */
export interface LeafRange {
  start: number
  end: number
}

/** PATH(m, D[n]) of RFC 6962 §2.1.1 as ranges, in proof order (leaf level first). */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  checkSize('index', index)
  checkSize('size', size)
  if (index >= size) {
    throw new SyndicateError(ERR_MERKLE_RANGE, `leaf index ${index} is outside a tree of size ${size}`, {
      index,
      size,
    })
  }
  const out: LeafRange[] = []
  const walk = (m: number, start: number, n: number): void => {
    if (n <= 1) return
    const k = splitPoint(n)
    if (m < k) {
      walk(m, start, k)
      out.push({ start: start + k, end: start + n })
    } else {
      walk(m - k, start + k, n - k)
      out.push({ start, end: start + k })
    }
  }
  walk(index, 0, size)
  return out
}

/** PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 §2.1.2 as ranges, in proof order. */
export function consistencyProofRanges(from: number, to: number): LeafRange[] {
  checkSize('from', from)
  checkSize('to', to)
  if (from > to) {
    throw new SyndicateError(
      ERR_MERKLE_RANGE,
      `cannot prove consistency from size ${from} to smaller size ${to}`,
      { from, to },
    )
  }
  if (from === 0 || from === to) return []
  const out: LeafRange[] = []
  const sub = (m: number, start: number, n: number, whole: boolean): void => {
    if (m === n) {
      if (!whole) out.push({ start, end: start + n })
      return
    }
    const k = splitPoint(n)
    if (m <= k) {
      sub(m, start, k, whole)
      out.push({ start: start + k, end: start + n })
    } else {
      sub(m - k, start + k, n - k, false)
      out.push({ start, end: start + k })
    }
  }
  sub(from, 0, to, true)
  return out
}

/** A perfect subtree: 2^level leaves starting at leaf index × 2^level. Level 0 nodes are leaf hashes. */
export interface NodeId {
  level: number
  index: number
}

/** The perfect subtrees of an aligned range, largest (leftmost) first. */
export function perfectNodes(range: LeafRange): NodeId[] {
  const out: NodeId[] = []
  let start = range.start
  let remaining = range.end - range.start
  while (remaining > 0) {
    let level = 0
    while (2 ** (level + 1) <= remaining) level++
    const width = 2 ** level
    if (start % width !== 0) {
      throw new SyndicateError(ERR_MERKLE_RANGE, `range [${range.start}, ${range.end}) is not aligned`, {
        ...range,
      })
    }
    out.push({ level, index: start / width })
    start += width
    remaining -= width
  }
  return out
}

/** MTH of an aligned range from the hashes of its perfect subtrees (largest first): fold from the right. */
export function foldRight(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) return EMPTY_ROOT
  let acc = hashes[hashes.length - 1]
  for (let i = hashes.length - 2; i >= 0; i--) acc = nodeHash(hashes[i], acc)
  return acc
}

/** MTH(D[n]) computed directly from all leaf hashes; the reference the incremental paths are tested against. */
export function rootFromLeafHashes(leaves: readonly Uint8Array[]): Uint8Array {
  const frontier = new Frontier()
  for (const l of leaves) frontier.append(l)
  return frontier.root()
}

/**
 * The compact range [0, size): the roots of the perfect subtrees along the tree's right edge, one per set
 * bit of `size`, largest first. Appending a leaf costs O(log n) hashes amortised O(1); it reports the
 * perfect subtrees it completes so a store can keep them for proofs.
 */
export class Frontier {
  size: number
  readonly hashes: Uint8Array[]

  constructor(size = 0, hashes: Uint8Array[] = []) {
    let bits = 0
    for (let s = size; s > 0; s = Math.floor(s / 2)) bits += s % 2
    if (bits !== hashes.length) {
      throw new SyndicateError(
        ERR_MERKLE_RANGE,
        `a frontier of size ${size} has ${bits} hashes, not ${hashes.length}`,
      )
    }
    this.size = size
    this.hashes = hashes
  }

  /** Appends a leaf hash; returns every perfect subtree completed by it (the leaf itself first). */
  append(leaf: Uint8Array): Array<NodeId & { hash: Uint8Array }> {
    const index = this.size
    const created: Array<NodeId & { hash: Uint8Array }> = [{ level: 0, index, hash: leaf }]
    let hash = leaf
    let level = 0
    // Each set low bit of the old size is a perfect subtree of that height that the new leaf completes.
    for (let s = index; s % 2 === 1; s = Math.floor(s / 2)) {
      hash = nodeHash(this.hashes.pop()!, hash)
      level++
      created.push({ level, index: Math.floor(index / 2 ** level), hash })
    }
    this.hashes.push(hash)
    this.size++
    return created
  }

  root(): Uint8Array {
    return foldRight(this.hashes)
  }

  clone(): Frontier {
    return new Frontier(this.size, [...this.hashes])
  }
}

/**
 * RFC 9162 §2.1.3.2: recomputes the root from a leaf hash and its inclusion path. Returns undefined when the
 * path has the wrong shape for (index, size).
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Uint8Array | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size)
    return undefined
  if (leaf.byteLength !== HASH_BYTES || proof.some((p) => p.byteLength !== HASH_BYTES)) return undefined
  let fn = index
  let sn = size - 1
  let r = leaf
  for (const p of proof) {
    if (sn === 0) return undefined
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
      }
    } else {
      r = nodeHash(r, p)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  return sn === 0 ? r : undefined
}

export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const r = rootFromInclusionProof(index, size, leaf, proof)
  return r !== undefined && bytesEqual(r, root)
}

/** RFC 9162 §2.1.4.2, with the trivial cases (equal sizes, empty first tree) handled as in RFC 9162's text. */
export function verifyConsistency(
  from: number,
  to: number,
  proof: readonly Uint8Array[],
  fromRoot: Uint8Array,
  toRoot: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to) return false
  if (proof.some((p) => p.byteLength !== HASH_BYTES)) return false
  if (from === to) return proof.length === 0 && bytesEqual(fromRoot, toRoot)
  // Every tree is consistent with the empty tree; the proof must be empty.
  if (from === 0) return proof.length === 0
  if (proof.length === 0) return false
  const path = isPowerOfTwo(from) ? [fromRoot, ...proof] : [...proof]
  let fn = from - 1
  let sn = to - 1
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  let fr = path[0]
  let sr = path[0]
  for (let i = 1; i < path.length; i++) {
    const c = path[i]
    if (sn === 0) return false
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr)
      sr = nodeHash(c, sr)
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2)
          sn = Math.floor(sn / 2)
        }
      }
    } else {
      sr = nodeHash(sr, c)
    }
    fn = Math.floor(fn / 2)
    sn = Math.floor(sn / 2)
  }
  return sn === 0 && bytesEqual(fr, fromRoot) && bytesEqual(sr, toRoot)
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false
  let x = n
  while (x % 2 === 0) x /= 2
  return x === 1
}

/** Reads stored perfect-subtree hashes (level 0 = leaf hashes), in the order asked. */
export type NodeReader = (ids: readonly NodeId[]) => Promise<Uint8Array[]>

/** The MTH of each range, reading all needed perfect subtrees in one batch. */
export async function hashRanges(ranges: readonly LeafRange[], read: NodeReader): Promise<Uint8Array[]> {
  const parts = ranges.map(perfectNodes)
  const hashes = await read(parts.flat())
  let at = 0
  return parts.map((p) => {
    const slice = hashes.slice(at, at + p.length)
    at += p.length
    return foldRight(slice)
  })
}
