import { readFileSync } from 'node:fs'

/** The software version, from package.json, reported by the API and to peers. */
export const SOFTWARE_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version
