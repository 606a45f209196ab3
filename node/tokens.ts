import { createHash, randomBytes } from 'node:crypto'
import type { NodeStore } from './store.ts'

/**
 * API bearer tokens. Only a SHA-256 of each token is stored, so a copy of the database does not grant access;
 * a token is shown once, when created.
 */
export const ROLES = ['operator', 'auditor'] as const
export type Role = (typeof ROLES)[number]

export interface TokenRecord {
  role: Role
  label: string
  createdAt: string
}

const SUBLEVEL = 'tokens'

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export async function createToken(store: NodeStore, role: Role, label: string): Promise<string> {
  const token = `syn_${role}_${randomBytes(24).toString('base64url')}`
  await store
    .sub<TokenRecord>(SUBLEVEL)
    .put(digest(token), { role, label, createdAt: new Date().toISOString() })
  return token
}

export class TokenVerifier {
  private readonly cache = new Map<string, TokenRecord>()
  private readonly store: NodeStore

  constructor(store: NodeStore) {
    this.store = store
  }

  async verify(token: string): Promise<TokenRecord | undefined> {
    if (!/^syn_[a-z]+_[A-Za-z0-9_-]{32}$/.test(token)) return undefined
    const key = digest(token)
    const hit = this.cache.get(key)
    if (hit) return hit
    // Lookup by digest: timing reveals at most the digest's position in the index, not the token.
    const rec = await this.store.sub<TokenRecord>(SUBLEVEL).get(key)
    if (rec) this.cache.set(key, rec)
    return rec
  }

  async create(role: Role, label: string): Promise<string> {
    return createToken(this.store, role, label)
  }
}
