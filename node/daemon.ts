import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { DestinationStream, Logger } from 'pino'
import { z } from 'zod'
import { EnclaveCluster } from '../enclave/cluster.ts'
import { SimulatedPlatform } from '../enclave/platform.ts'
import { type AlgorithmRegistry, defaultAlgorithms } from '../learning/joint/registry.ts'
import { ConsortiumDocumentSchema } from '../protocol/consortium.ts'
import { handleProtocol, requestProtocol } from '../protocol/define.ts'
import { consortiumSyncProtocol, MAX_SYNC_VERSIONS, statusProtocol } from '../protocol/membership.ts'
import { SessionService } from '../protocol/session.ts'
import { type ConfigOverrides, loadConfig, type NodeConfig } from './config.ts'
import { Governance } from './governance.ts'
import { createHost, type Host, MeshMaintainer } from './host.ts'
import { ApiBuilder, parseBody, type RouteDoc } from './http/app.ts'
import { loadIdentity } from './identity.ts'
import { checkTeeSpec, type EnclaveJobDeps, teeExecutor } from './jobs/enclave.ts'
import { ExecutorRegistry, noopExecutor } from './jobs/executors.ts'
import { checkMembershipSpec, membershipExecutor } from './jobs/membership.ts'
import { loadPolicyFile, type Policy, parsePolicy } from './jobs/policy.ts'
import { jobRoutes, policyRoutes } from './jobs/routes.ts'
import { JobService } from './jobs/service.ts'
import { checkPsiSpec, checkTrainSpec, psiExecutor, trainExecutor } from './jobs/training.ts'
import { createLogger } from './logger.ts'
import { Membership } from './membership.ts'
import { auditRouteDocs } from './services/audit/routes.ts'
import { DatasetRegistry, datasetRoutes } from './services/datasets/registry.ts'
import { ModelRegistry } from './services/models/registry.ts'
import { modelRoutes } from './services/models/routes.ts'
import { Scorer } from './services/models/scorer.ts'
import { PrivacyBudgets } from './services/privacy/budgets.ts'
import { FederatedScoring } from './services/scoring/federated.ts'
import { type NodeStore, openStore } from './store.ts'
import { ROLES, TokenVerifier } from './tokens.ts'
import { SOFTWARE_VERSION } from './version.ts'

/**
 * The composition root of one node: identity, store, libp2p host, membership, protocols, HTTP API. Everything
 * a node runs is started here and stopped in reverse order by `stop()`.
 */
export interface StartOptions {
  dir: string
  overrides?: ConfigOverrides
  env?: NodeJS.ProcessEnv
  logDestination?: DestinationStream
  /** Joint algorithms this node offers (default: every algorithm the software ships). */
  algorithms?: AlgorithmRegistry
}

export interface RunningNode {
  dir: string
  config: NodeConfig
  peerId: PeerId
  host: Host
  store: NodeStore
  membership: Membership
  sessions: SessionService
  jobs: JobService
  governance: Governance
  federated: FederatedScoring
  models: ModelRegistry
  executors: ExecutorRegistry
  datasets: DatasetRegistry
  api: ApiBuilder
  log: Logger
  httpUrl: string
  /** Multiaddrs other members can dial, each ending in /p2p/<peer id>. */
  addresses(): string[]
  stop(): Promise<void>
}

export const PeerSchema = z.object({
  name: z.string(),
  peerId: z.string(),
  roles: z.array(z.string()),
  connected: z.boolean(),
  connections: z.number().int(),
  remoteAddresses: z.array(z.string()),
})

export const NodeInfoSchema = z.object({
  name: z.string(),
  peerId: z.string(),
  version: z.string(),
  addresses: z.array(z.string()),
  consortium: z
    .object({ id: z.string(), name: z.string(), version: z.number(), members: z.number() })
    .nullable(),
})

export async function startNode(opts: StartOptions): Promise<RunningNode> {
  const config = loadConfig(opts.dir, { env: opts.env, overrides: opts.overrides })
  const identity = loadIdentity(opts.dir)
  const log = createLogger(config.name, config.log.level, opts.logDestination)
  const store = await openStore(opts.dir)
  const stops: Array<() => Promise<void> | void> = [() => store.close()]
  const stopAll = async () => {
    for (const s of stops.reverse()) {
      try {
        await s()
      } catch (e) {
        log.error({ err: (e as Error).message }, 'error during shutdown')
      }
    }
  }
  try {
    await store.sub('meta').put('lastStart', new Date().toISOString())
    const membership = new Membership(store, identity.peerId)
    await membership.load()

    const host = await createHost({ identity, config, membership, log })
    stops.push(() => host.stop())
    const admit = (p: PeerId) => membership.isMember(p)
    const sessions = new SessionService(host, { admit, log })
    await sessions.start()

    await handleProtocol(
      host,
      statusProtocol,
      async () => ({
        name: config.name,
        software: SOFTWARE_VERSION,
        consortiumVersion: membership.version,
        time: new Date().toISOString(),
      }),
      { admit, log },
    )
    await handleProtocol(
      host,
      consortiumSyncProtocol,
      async (req) => ({
        documents:
          membership.document?.body.id === req.id
            ? await membership.versionsAfter(req.have, MAX_SYNC_VERSIONS)
            : [],
      }),
      { admit, log },
    )
    // A member that reconnects may hold a newer signed membership document: fetch and install it.
    host.addEventListener('peer:connect', (evt) => {
      void syncMembership(host, membership, evt.detail, log)
    })

    const governance = new Governance({
      host,
      membership,
      store,
      logger: log,
      privateKey: identity.privateKey,
      name: config.name,
    })
    await governance.start()
    stops.push(() => governance.stop())
    const recorder = governance.recorder
    const datasets = new DatasetRegistry(store, async (rec) => {
      log.info({ dataset: rec.name, rows: rec.rows, schemaHash: rec.schemaHash }, 'dataset registered')
      await recorder.append('dataset.register', { datasetId: rec.name, schemaHash: rec.schemaHash }, {})
    })
    const algorithms = opts.algorithms ?? defaultAlgorithms()
    const models = new ModelRegistry(store.sub('models'))
    const privacy = new PrivacyBudgets(store, recorder)
    await privacy.load()
    const training = {
      datasets,
      algorithms,
      store,
      privacy,
      models,
      self: identity.peerId.toString(),
      // Called only while a job runs, so after `jobs` below exists.
      job: (id: string) => jobs.get(id),
    }
    const cluster = await startEnclaves(config, identity, log)
    if (cluster) stops.push(() => cluster.stop())
    const enclaveJobs: EnclaveJobDeps = {
      datasets,
      store,
      privateKey: identity.privateKey,
      policy: () => policy,
      recorder: () => recorder,
      cluster,
      log,
    }
    const [train, tee] = [trainExecutor(training), teeExecutor(enclaveJobs)]
    const [checkTrain, checkTee] = [checkTrainSpec(training), checkTeeSpec(enclaveJobs, training.self)]
    const executors = new ExecutorRegistry()
      .register('noop', noopExecutor)
      .register('psi', psiExecutor(training), checkPsiSpec)
      .register(
        'train',
        (ctx) => (ctx.spec.mode === 'tee' ? tee(ctx) : train(ctx)),
        (spec) => (spec.mode === 'tee' ? checkTee(spec) : checkTrain(spec)),
      )
      .register(
        'membership',
        membershipExecutor({
          membership,
          privateKey: identity.privateKey,
          peerId: identity.peerId.toString(),
        }),
        (spec) => checkMembershipSpec(spec, membership.document),
      )
    const filePolicy = loadPolicyFile(opts.dir)
    const storedPolicy = await store.sub<Policy>('policy').get('current')
    let policy: Policy = storedPolicy ? parsePolicy(storedPolicy, 'in the store') : filePolicy
    await privacy.setBudgets(budgetsOf(policy))
    const jobs = new JobService({
      host,
      membership,
      sessions,
      store,
      privateKey: identity.privateKey,
      executors,
      policy: () => policy,
      recorder: () => recorder,
      log,
    })
    await jobs.start()
    stops.push(() => jobs.stop())

    await host.start()
    const mesh = new MeshMaintainer(host, membership, config, log)
    mesh.start()
    stops.push(() => mesh.stop())

    const tokens = new TokenVerifier(store)
    const api = new ApiBuilder(tokens)
    const addresses = () => host.getMultiaddrs().map((a) => a.toString())
    const info = () => {
      const doc = membership.document
      return {
        name: config.name,
        peerId: identity.peerId.toString(),
        version: SOFTWARE_VERSION,
        addresses: addresses(),
        consortium: doc
          ? {
              id: doc.body.id,
              name: doc.body.name,
              version: doc.body.version,
              members: doc.body.members.length,
            }
          : null,
      }
    }
    api
      .route(
        {
          method: 'get',
          path: '/v1/health',
          access: 'public',
          summary: 'Liveness',
          response: z.object({ status: z.literal('ok'), name: z.string() }),
        },
        (c) => c.json({ status: 'ok' as const, name: config.name }),
      )
      .route(
        {
          method: 'get',
          path: '/v1/node',
          access: 'operator',
          summary: 'This node: peer id, addresses, version, consortium',
          response: NodeInfoSchema,
        },
        (c) => c.json(info()),
      )
      .route(
        {
          method: 'get',
          path: '/v1/peers',
          access: 'operator',
          summary: 'Consortium members and their connection state',
          response: z.object({ peers: z.array(PeerSchema) }),
        },
        (c) => c.json({ peers: peerList(host, membership) }),
      )
      .route(
        {
          method: 'get',
          path: '/v1/consortium',
          access: 'governance',
          summary: 'The installed consortium document',
          response: ConsortiumDocumentSchema,
        },
        (c) => {
          const doc = membership.document
          return doc
            ? c.json(doc)
            : c.json({ error: { code: 'ERR_NO_CONSORTIUM', message: 'no consortium installed yet' } }, 404)
        },
      )
      .route(
        {
          method: 'get',
          path: '/v1/consortium/chain',
          access: 'governance',
          summary:
            'Every installed consortium document version, oldest first (what a joining member installs)',
          response: ChainSchema,
        },
        async (c) => c.json({ chain: await membership.versionsAfter(0, Number.MAX_SAFE_INTEGER) }),
      )
      .route(
        {
          method: 'post',
          path: '/v1/consortium',
          access: 'operator',
          summary:
            'Install a signed consortium document (genesis or successor), or {chain: [...]} from the genesis on',
          body: z.union([ConsortiumDocumentSchema, ChainSchema]),
          response: ConsortiumDocumentSchema,
        },
        async (c) => {
          const input = (await c.req.json().catch(() => null)) as { chain?: unknown } | null
          const doc = Array.isArray(input?.chain)
            ? await membership.installChain(input.chain)
            : await membership.install(input)
          log.info({ consortium: doc.body.id, version: doc.body.version }, 'consortium document installed')
          return c.json(doc)
        },
      )
      .route(
        {
          method: 'post',
          path: '/v1/tokens',
          access: 'operator',
          summary: 'Create an API token (shown once)',
          body: TokenRequestSchema,
          response: z.object({ token: z.string(), role: z.enum(ROLES) }),
        },
        async (c) => {
          const req = await parseBody(c, TokenRequestSchema)
          return c.json({ token: await tokens.create(req.role, req.label), role: req.role })
        },
      )

    const jobApi = jobRoutes(jobs)
    api.mount('/v1/jobs', 'operator', jobApi.app, jobApi.docs)
    const policyApi = policyRoutes(
      () => policy,
      async (p) => {
        await store.sub<Policy>('policy').put('current', p)
        policy = p
        await privacy.setBudgets(budgetsOf(p))
        log.info('job policy replaced through the API')
      },
    )
    api.mount('/v1/policy', 'operator', policyApi.app, policyApi.docs)
    const scorer = new Scorer(models)
    stops.push(() => scorer.close())
    api.mount('/v1/models', 'operator', modelRoutes({ registry: models, scorer }), modelRouteDocs)
    const federated = new FederatedScoring({
      cluster,
      host,
      membership,
      sessions,
      jobs,
      datasets,
      algorithms,
      store,
      log,
    })
    await federated.start()
    const federatedApi = federated.routes()
    api.mount('/v1/federated', 'operator', federatedApi.app, federatedApi.docs)
    api.mount(
      '/v1/audit',
      'governance',
      governance.routes(),
      auditRouteDocs.map((d) => ({ ...d })),
    )
    const datasetApi = datasetRoutes(datasets)
    api.mount('/v1/datasets', 'operator', datasetApi.app, datasetApi.docs)
    api.route(
      {
        method: 'get',
        path: '/v1/enclave',
        access: 'operator',
        summary: 'Enclave instances this node hosts: attributes, and what each holds (counts, never data)',
        response: EnclaveInfoSchema,
      },
      async (c) => c.json(await enclaveInfo(cluster)),
    )

    const server = serve({
      fetch: (req) => api.app.fetch(req),
      hostname: config.http.host,
      port: config.http.port,
    })
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve)
      server.once('error', (e) =>
        reject(new Error(`HTTP API cannot listen on ${config.http.host}:${config.http.port}: ${e.message}`)),
      )
    })
    stops.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve())
          ;(server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.()
        }),
    )
    const port = (server.address() as AddressInfo).port
    const httpUrl = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`
    api.route(
      { method: 'get', path: '/v1/openapi.json', access: 'public', summary: 'This API as OpenAPI 3.1' },
      (c) => c.json(api.openapi({ title: `Syndicate node ${config.name}`, version: SOFTWARE_VERSION })),
    )
    log.info({ peerId: identity.peerId.toString(), addresses: addresses(), http: httpUrl }, 'node started')

    let stopping: Promise<void> | undefined
    return {
      dir: opts.dir,
      config,
      peerId: identity.peerId,
      host,
      store,
      membership,
      sessions,
      jobs,
      governance,
      federated,
      models,
      executors,
      datasets,
      api,
      log,
      httpUrl,
      addresses,
      stop: () => {
        stopping ??= (async () => {
          log.info('node stopping')
          await stopAll()
          log.flush?.()
        })()
        return stopping
      },
    }
  } catch (e) {
    await stopAll()
    throw e
  }
}

/** Starts the enclave cluster on a simulated platform certified by this member's identity, if configured. */
async function startEnclaves(
  config: NodeConfig,
  identity: { privateKey: PrivateKey; peerId: PeerId },
  log: Logger,
): Promise<EnclaveCluster | undefined> {
  if (config.enclave.instances === 0) return undefined
  const platform = await SimulatedPlatform.create(identity.privateKey, identity.peerId.toString())
  const cluster = new EnclaveCluster({
    platform,
    instances: config.enclave.instances,
    log: (msg, fields) => log.info(fields ?? {}, msg),
  })
  try {
    await cluster.start()
  } catch (e) {
    await cluster.stop()
    throw e
  }
  log.info({ instances: config.enclave.instances }, 'enclave cluster started (simulated TEE)')
  return cluster
}

const EnclaveInfoSchema = z.object({
  hosting: z.boolean(),
  publicKey: z.string().optional(),
  instances: z.array(
    z.object({
      id: z.string(),
      measurement: z.string(),
      svn: z.number(),
      debug: z.boolean(),
      holds: z.record(z.string(), z.number()),
    }),
  ),
})

async function enclaveInfo(cluster: EnclaveCluster | undefined): Promise<z.infer<typeof EnclaveInfoSchema>> {
  if (!cluster) return { hosting: false, instances: [] }
  const inventory = await cluster.inventory()
  return {
    hosting: true,
    publicKey: cluster.publicKey,
    instances: cluster.instances().map((i) => ({
      id: i.launch.instanceId,
      measurement: i.launch.measurement,
      svn: i.launch.svn,
      debug: i.launch.debug,
      holds: { ...(inventory[i.launch.instanceId] ?? {}) },
    })),
  }
}

const ChainSchema = z.object({ chain: z.array(ConsortiumDocumentSchema).min(1).max(10_000) })
const TokenRequestSchema = z.object({ role: z.enum(ROLES), label: z.string().min(1).max(64) }).strict()

function peerList(host: Host, membership: Membership): z.infer<typeof PeerSchema>[] {
  return membership.peers().map((m) => {
    const conns = host.getConnections().filter((c) => c.remotePeer.toString() === m.peerId)
    return {
      name: m.name,
      peerId: m.peerId,
      roles: m.roles,
      connected: conns.length > 0,
      connections: conns.length,
      remoteAddresses: conns.map((c) => c.remoteAddr.toString()),
    }
  })
}

async function syncMembership(host: Host, membership: Membership, peer: PeerId, log: Logger): Promise<void> {
  const doc = membership.document
  if (!doc || !membership.isMember(peer)) return
  try {
    const status = await requestProtocol(host, peer, statusProtocol, {
      consortiumVersion: membership.version,
    })
    if (status.consortiumVersion <= membership.version) return
    const { documents } = await requestProtocol(host, peer, consortiumSyncProtocol, {
      id: doc.body.id,
      have: membership.version,
    })
    for (const d of documents) {
      if (d.body.version <= membership.version) continue
      await membership.install(d)
      log.info(
        { from: peer.toString(), version: d.body.version },
        'installed newer consortium document from a member',
      )
    }
  } catch (e) {
    log.debug({ peer: peer.toString(), err: (e as Error).message }, 'membership sync with peer failed')
  }
}

function budgetsOf(policy: Policy): Record<string, { epsilon: number; delta: number }> {
  const out: Record<string, { epsilon: number; delta: number }> = {}
  for (const [name, ds] of Object.entries(policy.datasets)) if (ds.privacyBudget) out[name] = ds.privacyBudget
  return out
}

/** The model service's routes, for the OpenAPI document (paths relative to /v1/models). */
const modelRouteDocs: Array<Omit<RouteDoc, 'access'>> = [
  { method: 'get', path: '/', summary: 'Registered models and their versions' },
  {
    method: 'post',
    path: '/',
    summary: 'Import an ONNX model trained elsewhere, with its declared feature schema',
  },
  { method: 'get', path: '/:id', summary: 'One model: versions, metadata, lineage, states' },
  { method: 'post', path: '/:id/state', summary: 'Move a version between staged, live and retired' },
  {
    method: 'post',
    path: '/:id/score',
    summary: 'Score one row or a batch (JSON, or text/csv): probability, decision, reason codes',
  },
]
