import { join } from 'node:path'
import YAML from 'yaml'
import { z } from 'zod'
import { NodeErrorCode, readDataDirFile, UsageError } from './errors.ts'

/**
 * Node configuration: defaults < config file (YAML, `syndicate.yaml` in the data directory) < environment
 * (`SYNDICATE_*`) < command-line flags. Validated once; an invalid value stops the node with a message that
 * names the field and where it came from.
 */
const multiaddr = z
  .string()
  .regex(
    /^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d+(\/p2p\/\w+)?$/,
    'expected a TCP multiaddr such as /ip4/127.0.0.1/tcp/7700',
  )

export const ConfigSchema = z
  .object({
    name: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
        'a node name is 1-64 letters, digits, dot, dash or underscore',
      ),
    listen: z.array(multiaddr).min(1).default(['/ip4/127.0.0.1/tcp/0']),
    announce: z.array(multiaddr).default([]),
    http: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(7600),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 7600 }),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .strict()
      .default({ level: 'info' }),
    reconnect: z
      .object({
        initialDelayMs: z.number().int().min(50).max(60_000).default(500),
        maxDelayMs: z.number().int().min(100).max(3_600_000).default(30_000),
      })
      .strict()
      .default({ initialDelayMs: 500, maxDelayMs: 30_000 }),
    enclave: z
      .object({
        /** Enclave processes this node runs for `tee` jobs (0 = it hosts no enclave). */
        instances: z.number().int().min(0).max(16).default(0),
      })
      .strict()
      .default({ instances: 0 }),
  })
  .strict()

export type NodeConfig = z.infer<typeof ConfigSchema>

export const CONFIG_FILE = 'syndicate.yaml'

export function defaultConfigText(name: string): string {
  return `# Syndicate node configuration.
# Precedence: these values < SYNDICATE_* environment variables < command-line flags.

# This institution's node name, shown in logs and to other members.
name: ${name}

# libp2p TCP listen addresses (Noise encryption, yamux multiplexing). Port 0 picks a free port.
# Env: SYNDICATE_LISTEN (comma separated). Flag: --listen.
listen:
  - /ip4/127.0.0.1/tcp/0

# Addresses other members should dial, when they differ from the bound listen addresses (NAT, containers).
# Env: SYNDICATE_ANNOUNCE.
announce: []

# The HTTP API (and the dashboard). Keep it on loopback unless a reverse proxy with TLS fronts it.
# Env: SYNDICATE_HTTP_HOST, SYNDICATE_HTTP_PORT. Flag: --http-port.
http:
  host: 127.0.0.1
  port: 7600

# trace | debug | info | warn | error | fatal | silent. Env: SYNDICATE_LOG_LEVEL. Flag: --log-level.
log:
  level: info

# Redial of members that are not connected: exponential backoff from initialDelayMs up to maxDelayMs.
reconnect:
  initialDelayMs: 500
  maxDelayMs: 30000

# Enclave host: how many enclave processes to run for \`tee\` jobs (0 = none). Two or more let a crashed
# instance's job fail over. Env: SYNDICATE_ENCLAVE_INSTANCES.
enclave:
  instances: 0
`
}

export interface ConfigOverrides {
  listen?: string[]
  httpPort?: number
  httpHost?: string
  logLevel?: string
  name?: string
}

/** Reads environment overrides; numbers are parsed here so the schema can name the variable on error. */
export function envOverrides(env: NodeJS.ProcessEnv): {
  values: Record<string, unknown>
  source: Record<string, string>
} {
  const values: Record<string, unknown> = {}
  const source: Record<string, string> = {}
  const set = (path: string, v: unknown, name: string) => {
    values[path] = v
    source[path] = `environment variable ${name}`
  }
  const list = (s: string) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean)
  if (env.SYNDICATE_NAME) set('name', env.SYNDICATE_NAME, 'SYNDICATE_NAME')
  if (env.SYNDICATE_LISTEN) set('listen', list(env.SYNDICATE_LISTEN), 'SYNDICATE_LISTEN')
  if (env.SYNDICATE_ANNOUNCE) set('announce', list(env.SYNDICATE_ANNOUNCE), 'SYNDICATE_ANNOUNCE')
  if (env.SYNDICATE_HTTP_HOST) set('http.host', env.SYNDICATE_HTTP_HOST, 'SYNDICATE_HTTP_HOST')
  if (env.SYNDICATE_HTTP_PORT) set('http.port', numeric(env.SYNDICATE_HTTP_PORT), 'SYNDICATE_HTTP_PORT')
  if (env.SYNDICATE_LOG_LEVEL) set('log.level', env.SYNDICATE_LOG_LEVEL, 'SYNDICATE_LOG_LEVEL')
  if (env.SYNDICATE_ENCLAVE_INSTANCES)
    set('enclave.instances', numeric(env.SYNDICATE_ENCLAVE_INSTANCES), 'SYNDICATE_ENCLAVE_INSTANCES')
  return { values, source }
}

function numeric(s: string): number | string {
  return /^\d+$/.test(s.trim()) ? Number(s) : s
}

export function loadConfig(
  dir: string,
  opts: { env?: NodeJS.ProcessEnv; overrides?: ConfigOverrides } = {},
): NodeConfig {
  const file = join(dir, CONFIG_FILE)
  const text = readDataDirFile(file, 'config', dir)
  let raw: unknown
  try {
    raw = YAML.parse(text) ?? {}
  } catch (e) {
    throw new UsageError(
      NodeErrorCode.CONFIG,
      `config file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`,
      { file },
    )
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UsageError(NodeErrorCode.CONFIG, `config file ${file} must be a YAML mapping`, { file })
  }
  const merged = structuredClone(raw) as Record<string, unknown>
  const source: Record<string, string> = {}
  const env = envOverrides(opts.env ?? process.env)
  const flags: Record<string, unknown> = {}
  const o = opts.overrides ?? {}
  if (o.name !== undefined) flags.name = o.name
  if (o.listen !== undefined) flags.listen = o.listen
  if (o.httpPort !== undefined) flags['http.port'] = o.httpPort
  if (o.httpHost !== undefined) flags['http.host'] = o.httpHost
  if (o.logLevel !== undefined) flags['log.level'] = o.logLevel
  for (const [path, v] of Object.entries(env.values)) setPath(merged, path, v)
  Object.assign(source, env.source)
  for (const [path, v] of Object.entries(flags)) {
    setPath(merged, path, v)
    source[path] = `flag --${path.replace('.', '-')}`
  }
  const parsed = ConfigSchema.safeParse(merged)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const path = issue.path.join('.')
    const top = issue.path.filter((p) => typeof p === 'string').join('.')
    const from = source[path] ?? source[top] ?? `config file ${file}`
    throw new UsageError(
      NodeErrorCode.CONFIG,
      `invalid config value "${path || '(root)'}" (from ${from}): ${issue.message}`,
      { field: path, source: from },
    )
  }
  return parsed.data
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  let cur = obj
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {}
    cur = cur[p] as Record<string, unknown>
  }
  cur[parts[parts.length - 1]] = value
}
