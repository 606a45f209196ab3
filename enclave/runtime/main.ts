/**
 * Entry point of an enclave process (started by enclave/cluster.ts with an IPC channel). It answers the
 * operations of enclave/ipc.ts and nothing else; a malformed request gets an error reply, never a crash.
 * Keys and data live only in this process's memory.
 */
import { createHash } from 'node:crypto'
import { getHeapSnapshot } from 'node:v8'
import { SyndicateError } from '../../crypto/errors.ts'
import { OPS, type Op, type OpRequest, type Reply, RequestEnvelope } from '../ipc.ts'
import { EnclaveEngine } from './engine.ts'

let engine: EnclaveEngine | undefined

function send(msg: Reply): void {
  process.send?.(msg)
}

function need(): EnclaveEngine {
  if (!engine) throw new SyndicateError('ERR_ENCLAVE_STATE', 'the enclave is not initialised')
  return engine
}

async function heapContains(hashes: string[]): Promise<string[]> {
  ;(globalThis as { gc?: () => void }).gc?.()
  let text = ''
  for await (const chunk of getHeapSnapshot()) text += chunk
  const { strings } = JSON.parse(text) as { strings: string[] }
  text = ''
  const wanted = new Set(hashes)
  const found = new Set<string>()
  for (const s of strings) {
    const h = createHash('sha256').update(s).digest('hex')
    if (wanted.has(h)) found.add(h)
  }
  return hashes.filter((h) => found.has(h))
}

const handlers: { [O in Op]: (a: OpRequest<O>) => unknown } = {
  init: (a) => {
    if (engine) throw new SyndicateError('ERR_ENCLAVE_STATE', 'the enclave is already initialised')
    engine = new EnclaveEngine(a.launch, a.config)
    return { measurement: engine.measurement }
  },
  report: (a) => need().report(a.nonce, a.key),
  'cluster.create': () => ({ publicKey: need().createCluster() }),
  'sync.nonce': () => ({ nonce: need().syncNonce() }),
  'sync.export': async (a) => ({ box: await need().exportClusterKey(a.evidence, a.nonce) }),
  'sync.import': (a) => ({ publicKey: need().importClusterKey(a.box) }),
  'job.open': (a) => ({ specHash: need().openJob(a.spec) }),
  'job.upload': (a) => {
    need().upload(a.job, a.party, a.policy, a.wrappedKey, a.chunks)
    return {}
  },
  'job.chunk': (a) => {
    need().chunk(a.job, a.party, a.index, a.box)
    return {}
  },
  'job.run': (a) => need().run(a.job, (phase) => send({ event: 'progress', job: a.job, phase })),
  'job.drop': (a) => {
    need().dropJob(a.job)
    return {}
  },
  'model.load': (a) => {
    need().loadModel(a.job, a.sealed)
    return {}
  },
  score: (a) => ({ box: need().score(a.job, a.session, a.requester, a.rows) }),
  inventory: () => need().inventory(),
  probe: async (a) => {
    if (!need().config.diagnostics)
      throw new SyndicateError('ERR_FORBIDDEN', 'heap probes exist only in diagnostics builds')
    return { found: await heapContains(a.sha256) }
  },
}

process.on('message', async (raw: unknown) => {
  const env = RequestEnvelope.safeParse(raw)
  if (!env.success) return // not a request: nothing to answer
  const { id, op } = env.data
  try {
    const args = OPS[op].req.safeParse(env.data.args)
    if (!args.success)
      throw new SyndicateError(
        'ERR_INVALID_MESSAGE',
        `invalid ${op} request: ${args.error.issues[0]?.path.join('.')} ${args.error.issues[0]?.message}`,
      )
    const result = await (handlers[op] as (a: unknown) => unknown)(args.data)
    send({ id, ok: true, result })
  } catch (e) {
    const err = e as SyndicateError
    send({
      id,
      ok: false,
      error: {
        code: typeof err.code === 'string' ? err.code : 'ERR_ENCLAVE_INTERNAL',
        message: String(err.message).slice(0, 4000),
        ...(err.details ? { details: err.details } : {}),
      },
    })
  }
})
// The host going away ends the enclave: nothing it holds may outlive its session.
process.on('disconnect', () => process.exit(0))
send({ event: 'ready' })
