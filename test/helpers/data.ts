import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** The bundled credit data: ../shared/data next to the repository (as in CI's checkout). */
export const DATA_DIR = resolve(import.meta.dirname, '../../../shared/data')

export function dataFile(name: string): string {
  const f = join(DATA_DIR, name)
  if (!existsSync(f)) throw new Error(`bundled data file ${f} is missing`)
  return f
}
