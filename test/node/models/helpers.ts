import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { ModelRegistry } from '../../../node/services/models/registry.ts'
import type { Sublevel } from '../../../node/store.ts'

/** A registry over a fresh LevelDB in a temp dir; `reopen` closes and reopens the same database. */
export async function tempRegistry() {
  const dir = mkdtempSync(join(tmpdir(), 'syndicate-models-'))
  let db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
  const sub = () => db.sublevel<string, unknown>('models', { valueEncoding: 'json' }) as Sublevel
  return {
    registry: new ModelRegistry(sub()),
    async reopen() {
      await db.close()
      db = new Level<string, unknown>(dir, { valueEncoding: 'json' })
      return new ModelRegistry(sub())
    },
    async cleanup() {
      await db.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
