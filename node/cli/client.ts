import { type Command, Option } from 'commander'
import { loadConfig } from '../config.ts'
import { UsageError } from '../errors.ts'

/** A small client of a running node's HTTP API, for CLI commands. */
export interface ApiTarget {
  url: string
  token?: string
}

export function resolveTarget(opts: { api?: string; dir?: string; token?: string }): ApiTarget {
  const token = opts.token ?? process.env.SYNDICATE_TOKEN
  if (opts.api) return { url: opts.api.replace(/\/$/, ''), token }
  if (opts.dir) {
    const cfg = loadConfig(opts.dir)
    if (cfg.http.port === 0)
      throw new UsageError('ERR_USAGE', 'the node listens on a random HTTP port (0); pass --api URL')
    return { url: `http://${cfg.http.host}:${cfg.http.port}`, token }
  }
  throw new UsageError('ERR_USAGE', 'say which node: --dir DIR or --api URL')
}

export async function apiCall<T>(
  target: ApiTarget,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  let res: Response
  try {
    res = await fetch(`${target.url}${path}`, {
      method,
      headers: {
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    })
  } catch (e) {
    throw new UsageError(
      'ERR_NODE_UNREACHABLE',
      `cannot reach the node at ${target.url} (${(e as Error).message}); is "syndicate start" running?`,
    )
  }
  const text = await res.text()
  const json = text ? JSON.parse(text) : undefined
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | undefined)?.error
    const hint = res.status === 401 ? ' (pass --token or set SYNDICATE_TOKEN)' : ''
    throw new UsageError(
      err?.code ?? `HTTP_${res.status}`,
      `${method} ${path}: ${err?.message ?? res.statusText}${hint}`,
    )
  }
  return json as T
}

/** Options shared by commands that talk to a running node. */
export function apiOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--dir <dir>', 'data directory of the node (its config gives the API address)'))
    .addOption(new Option('--api <url>', 'base URL of the node API, e.g. http://127.0.0.1:7600'))
    .addOption(new Option('--token <token>', 'API token (default: $SYNDICATE_TOKEN)'))
}
