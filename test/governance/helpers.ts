import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { afterEach, beforeEach } from 'vitest'
import { type Signer, signerFromSeed } from '../../governance/keys.ts'

/** A deterministic signer per name (seed = SHA-256 of the name), so tests are reproducible. */
export function testSigner(name: string): Signer {
  return signerFromSeed(name, new Uint8Array(createHash('sha256').update(`seed:${name}`).digest()))
}

export const hash = (s: string): string => createHash('sha256').update(s).digest('hex')

/** Fresh LevelDB databases in a temporary directory; `cleanup` closes and removes them. */
export function tempDbs() {
  const dir = mkdtempSync(join(tmpdir(), 'syndicate-gov-'))
  const dbs: Level<string, unknown>[] = []
  let n = 0
  return {
    async open(): Promise<Level<string, unknown>> {
      const db = new Level<string, unknown>(join(dir, `db${n++}`), { valueEncoding: 'json' })
      await db.open()
      dbs.push(db)
      return db
    },
    /** Closes `db` and opens the same files again as a new instance, as a restarted node would. */
    async reopen(db: Level<string, unknown>): Promise<Level<string, unknown>> {
      await db.close()
      const again = new Level<string, unknown>(db.location, { valueEncoding: 'json' })
      await again.open()
      dbs.push(again)
      return again
    },
    async cleanup(): Promise<void> {
      await Promise.all(dbs.map((d) => d.close()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** `tempDbs` for every test of a file: fresh databases before each test, closed and removed after it. */
export function useTempDbs(): Pick<ReturnType<typeof tempDbs>, 'open' | 'reopen'> {
  let current: ReturnType<typeof tempDbs> | undefined
  beforeEach(() => {
    current = tempDbs()
  })
  afterEach(async () => {
    await current?.cleanup()
  })
  return { open: () => current!.open(), reopen: (db) => current!.reopen(db) }
}
