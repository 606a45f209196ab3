import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { SyndicateError } from '../../crypto/errors.ts'
import type { Role, TokenVerifier } from '../tokens.ts'

/**
 * The node's HTTP API. Every route is declared with its access level, which both guards it and documents it in
 * the OpenAPI description at /v1/openapi.json. Errors are always `{ "error": { "code", "message" } }`.
 *
 * Access: `public` needs no token; `operator` needs an operator token; `governance` is read-only governance
 * data, open to operator and auditor tokens.
 */
export type Access = 'public' | 'operator' | 'governance'

export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'delete'
  path: string
  access: Access
  summary: string
  response?: z.ZodType
  body?: z.ZodType
}

export const ErrorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), problems: z.array(z.unknown()).optional() }),
})

const ALLOWED: Record<Access, readonly Role[]> = {
  public: [],
  operator: ['operator'],
  governance: ['operator', 'auditor'],
}

export type ApiEnv = { Variables: { role?: Role } }

export function jsonError(
  c: Context,
  status: 400 | 401 | 403 | 404 | 409 | 413 | 422 | 500 | 503,
  code: string,
  message: string,
  extra?: object,
) {
  return c.json({ error: { code, message, ...extra } }, status)
}

export function guard(tokens: TokenVerifier, access: Access): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    if (access === 'public') return next()
    const header = c.req.header('authorization') ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(header)
    if (!m)
      return jsonError(
        c,
        401,
        'ERR_UNAUTHENTICATED',
        'missing bearer token: send "Authorization: Bearer <token>"',
      )
    const rec = await tokens.verify(m[1])
    if (!rec) return jsonError(c, 401, 'ERR_UNAUTHENTICATED', 'unknown or revoked token')
    if (!ALLOWED[access].includes(rec.role)) {
      return jsonError(
        c,
        403,
        'ERR_FORBIDDEN',
        `a ${rec.role} token cannot use this route (needs ${ALLOWED[access].join(' or ')})`,
      )
    }
    c.set('role', rec.role)
    return next()
  }
}

/** Status codes for error codes raised by the layers below. */
const STATUS_BY_CODE: Record<string, 400 | 404 | 409 | 413 | 422> = {
  ERR_INVALID_CONSORTIUM: 422,
  ERR_INVALID_REQUEST: 400,
  ERR_NOT_FOUND: 404,
  ERR_CONFLICT: 409,
  ERR_MESSAGE_TOO_LARGE: 413,
}

export class ApiBuilder {
  readonly app = new Hono<ApiEnv>()
  readonly docs: RouteDoc[] = []
  private readonly tokens: TokenVerifier

  constructor(tokens: TokenVerifier) {
    this.tokens = tokens
    this.app.onError((err, c) => {
      if (err instanceof SyndicateError) {
        return jsonError(c, STATUS_BY_CODE[err.code] ?? 400, err.code, err.message)
      }
      console.error(err)
      return jsonError(c, 500, 'ERR_INTERNAL', 'internal error; see the node log')
    })
    this.app.notFound((c) => jsonError(c, 404, 'ERR_NOT_FOUND', `no route ${c.req.method} ${c.req.path}`))
  }

  route(doc: RouteDoc, handler: (c: Context<ApiEnv>) => Response | Promise<Response>): this {
    this.docs.push(doc)
    this.app.on(doc.method.toUpperCase(), doc.path, guard(this.tokens, doc.access), handler)
    return this
  }

  /** Mounts a service's sub-app under `prefix` behind `access`; `docs` describe its routes for OpenAPI. */
  mount(prefix: string, access: Access, sub: Hono, docs: Omit<RouteDoc, 'access'>[] = []): this {
    this.app.use(`${prefix}/*`, guard(this.tokens, access))
    this.app.use(prefix, guard(this.tokens, access))
    this.app.route(prefix, sub as unknown as Hono<ApiEnv>)
    for (const d of docs) this.docs.push({ ...d, path: `${prefix}${d.path === '/' ? '' : d.path}`, access })
    return this
  }

  openapi(info: { title: string; version: string }): object {
    const paths: Record<string, Record<string, object>> = {}
    for (const d of this.docs) {
      const path = d.path.replace(/:(\w+)/g, '{$1}')
      const params = [...d.path.matchAll(/:(\w+)/g)].map((m) => ({
        name: m[1],
        in: 'path',
        required: true,
        schema: { type: 'string' },
      }))
      paths[path] ??= {}
      paths[path][d.method] = {
        summary: d.summary,
        ...(params.length ? { parameters: params } : {}),
        ...(d.access === 'public' ? { security: [] } : { 'x-syndicate-access': d.access }),
        ...(d.body
          ? {
              requestBody: {
                required: true,
                content: { 'application/json': { schema: z.toJSONSchema(d.body, { io: 'input' }) } },
              },
            }
          : {}),
        responses: {
          200: {
            description: 'OK',
            ...(d.response
              ? { content: { 'application/json': { schema: z.toJSONSchema(d.response) } } }
              : {}),
          },
          ...(d.access === 'public'
            ? {}
            : {
                401: errorResponse('missing or unknown token'),
                403: errorResponse('token role not allowed'),
              }),
          400: errorResponse('invalid request'),
        },
      }
    }
    return {
      openapi: '3.1.0',
      info,
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'operator or auditor token from `syndicate init` / `syndicate tokens create`',
          },
        },
      },
      security: [{ bearer: [] }],
      paths,
    }
  }
}

function errorResponse(description: string) {
  return { description, content: { 'application/json': { schema: z.toJSONSchema(ErrorBodySchema) } } }
}

/** Parses a JSON body against `schema`, answering 400 with every problem when it does not fit. */
export async function parseBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  let json: unknown
  try {
    json = await c.req.json()
  } catch {
    throw new SyndicateError('ERR_INVALID_REQUEST', 'request body is not valid JSON')
  }
  const r = schema.safeParse(json)
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
    throw new SyndicateError('ERR_INVALID_REQUEST', `invalid request body: ${problems.join('; ')}`, {
      problems,
    })
  }
  return r.data
}
