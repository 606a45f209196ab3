import { join } from 'node:path'
import { Level } from 'level'
import { NodeErrorCode, UsageError } from './errors.ts'

/**
 * One LevelDB database per node (`<dir>/db`), divided into namespaced sublevels; each service owns its own.
 * JSON values unless a service asks otherwise.
 */
export type Db = Level<string, unknown>
export type Sublevel<V = unknown> = ReturnType<typeof makeSublevel<V>>

function makeSublevel<V>(db: Db, name: string) {
  return db.sublevel<string, V>(name, { valueEncoding: 'json' })
}

export interface NodeStore {
  db: Db
  sub<V = unknown>(name: string): Sublevel<V>
  close(): Promise<void>
}

export async function openStore(dir: string): Promise<NodeStore> {
  const location = join(dir, 'db')
  const db: Db = new Level<string, unknown>(location, { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    const msg = `${(e as Error).message} ${cause?.message ?? ''}`
    if (/lock/i.test(msg)) {
      throw new UsageError(
        NodeErrorCode.DATA_DIR_LOCKED,
        `data directory ${dir} is in use by a running node (database locked); stop it first or use its HTTP API`,
        { dir },
      )
    }
    throw new UsageError(
      'ERR_STORE',
      `cannot open the database at ${location}: ${msg.trim()}`,
      { location },
      { cause: e },
    )
  }
  const subs = new Map<string, Sublevel>()
  return {
    db,
    sub<V>(name: string) {
      let s = subs.get(name)
      if (!s) {
        s = makeSublevel<unknown>(db, name)
        subs.set(name, s)
      }
      return s as unknown as Sublevel<V>
    },
    close: () => db.close(),
  }
}
