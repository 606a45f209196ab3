import { execFile } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '../..')
const bin = join(root, 'bin/syndicate.js')
const base = mkdtempSync(join(tmpdir(), 'syndicate-cli-'))
afterAll(() => rmSync(base, { recursive: true, force: true }))

async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await run(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
      timeout: 30_000,
    })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string }
    return { code: err.code, stdout: err.stdout, stderr: err.stderr }
  }
}

describe('syndicate CLI: init and start validation', () => {
  it('init creates a 0600 identity and commented config, shows the token once, and refuses to overwrite', async () => {
    const dir = join(base, 'a')
    const r = await cli(['init', '--dir', dir, '--name', 'bank-a'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/syn_operator_/)
    expect(statSync(join(dir, 'identity.key')).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(dir, 'syndicate.yaml'), 'utf8')).toMatch(/^# /m)
    const before = readFileSync(join(dir, 'identity.key'))
    const again = await cli(['init', '--dir', dir, '--name', 'bank-a'])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/refusing to overwrite/)
    expect(readFileSync(join(dir, 'identity.key'))).toEqual(before)
  })

  it('an invalid config value names the field and exits 2', async () => {
    const dir = join(base, 'b')
    await cli(['init', '--dir', dir, '--name', 'bank-b'])
    const cfgFile = join(dir, 'syndicate.yaml')
    const cfg = readFileSync(cfgFile, 'utf8')
    writeFileSync(cfgFile, cfg.replace('port: 7600', 'port: 99999'))
    const r = await cli(['start', '--dir', dir])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/invalid config value "http\.port"/)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    writeFileSync(cfgFile, cfg)
    const env = await cli(['start', '--dir', dir], { SYNDICATE_LOG_LEVEL: 'loud' })
    expect(env.code).toBe(2)
    expect(env.stderr).toMatch(/"log\.level" \(from environment variable SYNDICATE_LOG_LEVEL\)/)
    writeFileSync(cfgFile, `${cfg}\nbogus: 1\n`)
    const r2 = await cli(['start', '--dir', dir])
    expect(r2.code).toBe(2)
    expect(r2.stderr).toMatch(/bogus/)
  }, 60_000)

  it('a corrupt identity file: clear error, exit 2, file untouched', async () => {
    const dir = join(base, 'c')
    await cli(['init', '--dir', dir, '--name', 'bank-c'])
    const idFile = join(dir, 'identity.key')
    writeFileSync(idFile, '{"type":"Ed25519","privateKey":"AAAA"}')
    chmodSync(idFile, 0o600)
    const r = await cli(['start', '--dir', dir])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/identity file .* is corrupt/)
    expect(readFileSync(idFile, 'utf8')).toBe('{"type":"Ed25519","privateKey":"AAAA"}')
  })
})
