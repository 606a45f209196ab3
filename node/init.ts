import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CONFIG_FILE, ConfigSchema, defaultConfigText } from './config.ts'
import { createIdentity } from './identity.ts'
import { openStore } from './store.ts'
import { createToken } from './tokens.ts'

/**
 * Creates a node's data directory: identity (0600, never overwritten), a commented config file, the database
 * and the first operator token, which is returned to be shown once.
 */
export async function initNode(opts: { dir: string; name: string; httpPort?: number }) {
  ConfigSchema.shape.name.parse(opts.name)
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 })
  const identity = await createIdentity(opts.dir)
  const configPath = join(opts.dir, CONFIG_FILE)
  if (!existsSync(configPath)) {
    let text = defaultConfigText(opts.name)
    if (opts.httpPort !== undefined) text = text.replace('  port: 7600', `  port: ${opts.httpPort}`)
    writeFileSync(configPath, text, { mode: 0o600, flag: 'wx' })
  }
  const store = await openStore(opts.dir)
  try {
    const token = await createToken(store, 'operator', 'created by init')
    return { peerId: identity.peerId.toString(), token, configPath }
  } finally {
    await store.close()
  }
}
