import type { AbstractLevel, AbstractSublevel } from 'abstract-level'

/**
 * Where the governance code keeps its state: one binary sublevel of the node's LevelDB, with key prefixes per
 * record kind, so that an append (entry, tree nodes, tree state) is a single atomic batch.
 *
 *   e/<index, 14 hex digits>    entry bytes (canonical JSON)
 *   n/<level>/<index>           perfect-subtree hash (level 0 = leaf hash)
 *   m/state                     tree size, right-edge frontier, last entry time (JSON)
 *   c/<size, 14 hex digits>     the owner's signed checkpoint with the cosignatures collected for it
 *   w/<origin>                  witness: latest checkpoint verified for another member's log
 *   f/<origin>                  witness that checks entries: the right-edge frontier of that log
 *   x/<origin>/<time>/<n>       witness: evidence of an inconsistent log (JSON)
 */

// biome-ignore lint/suspicious/noExplicitAny: any LevelDB (or sublevel of any encoding) can host the store.
export type GovernanceDb = AbstractLevel<any, string, any>
// biome-ignore lint/suspicious/noExplicitAny: the parent's types do not matter to the binary sublevel.
export type GovernanceStore = AbstractSublevel<any, any, string, Uint8Array>

export const STORE_NAME = 'governance'

export function openStore(db: GovernanceDb): GovernanceStore {
  return db.sublevel<string, Uint8Array>(STORE_NAME, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

export const pad = (n: number): string => n.toString(16).padStart(14, '0')
export const entryKey = (index: number): string => `e/${pad(index)}`
export const nodeKey = (level: number, index: number): string => `n/${level}/${index}`
export const STATE_KEY = 'm/state'
export const checkpointKey = (size: number): string => `c/${pad(size)}`
export const witnessKey = (origin: string): string => `w/${origin}`
export const mirrorKey = (origin: string): string => `f/${origin}`
export const evidencePrefix = (origin: string): string => `x/${origin}/`

/** Bounds for iterating every key that starts with `prefix` ('0' sorts right after '/'). */
export function prefixRange(prefix: string): { gte: string; lt: string } {
  return {
    gte: prefix,
    lt: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1),
  }
}

// Buffer.from encodes UTF-8 several times faster than TextEncoder on Node.
export const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8')
export const fromUtf8 = (b: Uint8Array): string => new TextDecoder().decode(b)
