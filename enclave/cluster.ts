/**
 * The cluster manager on the enclave host: it launches enclave processes on the simulated platform, registers
 * each only after key sync (an instance that already holds the cluster key verifies the newcomer's evidence
 * before sealing the key to it), assigns jobs to instances, keeps each job's uploads as ciphertext so that a
 * crashed instance's job fails over to another instance, and serves online prediction from any instance.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { SyndicateError } from '../crypto/errors.ts'
import { SYNDICATE_PRODUCT_ID, SYNDICATE_SIGNER, SYNDICATE_SVN } from './appraisal.ts'
import type { Evidence } from './evidence.ts'
import { OPS, type Op, type OpRequest, type OpResult, ReplyEnvelope } from './ipc.ts'
import { DEFAULT_ENCLAVE_CONFIG, type EnclaveConfig, measure } from './measurement.ts'
import type { LaunchAttributes, SimulatedPlatform } from './platform.ts'
import type { SignedUsagePolicy } from './release.ts'
import type { Inventory, JobOutputs } from './runtime/engine.ts'

const ENTRY = fileURLToPath(
  new URL(`./runtime/main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
)

export interface InstanceOptions {
  config?: EnclaveConfig
  debug?: boolean
  svn?: number
}

/** One enclave process and the IPC calls to it. */
export class EnclaveInstance {
  readonly launch: LaunchAttributes
  readonly config: EnclaveConfig
  private readonly proc: ChildProcess
  private readonly pending = new Map<
    number,
    { op: Op; resolve: (v: unknown) => void; reject: (e: Error) => void }
  >()
  private nextId = 1
  private exitedWith?: string
  /** Progress listeners of the jobs running on this instance. */
  readonly progress = new Map<string, (phase: string) => void>()
  readonly exited: Promise<void>

  private constructor(launch: LaunchAttributes, config: EnclaveConfig, proc: ChildProcess) {
    this.launch = launch
    this.config = config
    this.proc = proc
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitedWith = signal ?? `exit code ${code}`
        const err = new SyndicateError(
          'ERR_ENCLAVE_CRASHED',
          `enclave instance ${launch.instanceId} stopped (${this.exitedWith})`,
        )
        for (const p of this.pending.values()) p.reject(err)
        this.pending.clear()
        resolve()
      })
    })
    proc.on('message', (raw) => this.onMessage(raw))
  }

  static async start(
    platform: SimulatedPlatform,
    instanceId: string,
    opts: InstanceOptions = {},
  ): Promise<EnclaveInstance> {
    const config = opts.config ?? DEFAULT_ENCLAVE_CONFIG
    const launch: LaunchAttributes = {
      instanceId,
      // The platform measures what it launches; verifiers compare with the build they expect.
      measurement: measure(config),
      signer: SYNDICATE_SIGNER,
      productId: SYNDICATE_PRODUCT_ID,
      svn: opts.svn ?? SYNDICATE_SVN,
      debug: opts.debug ?? false,
    }
    const proc = fork(ENTRY, [], {
      serialization: 'advanced',
      execArgv: ['--expose-gc', '--disable-warning=ExperimentalWarning'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const inst = new EnclaveInstance(launch, config, proc)
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: unknown) => {
        if ((m as { event?: string })?.event === 'ready') {
          proc.off('message', onMsg)
          resolve()
        }
      }
      proc.on('message', onMsg)
      inst.exited.then(() =>
        reject(new SyndicateError('ERR_ENCLAVE_CRASHED', `enclave ${instanceId} did not start`)),
      )
    })
    const { measurement } = await inst.call('init', {
      launch: {
        instanceId,
        signer: launch.signer,
        productId: launch.productId,
        svn: launch.svn,
        debug: launch.debug,
        platformKey: platform.key,
        platformHost: platform.host,
      },
      config,
    })
    if (measurement !== launch.measurement) {
      inst.kill()
      throw new SyndicateError(
        'ERR_ENCLAVE_MEASUREMENT',
        `enclave ${instanceId} measures ${measurement}, not the ${launch.measurement} the platform launched: the bundle changed on disk`,
      )
    }
    return inst
  }

  get alive(): boolean {
    return this.exitedWith === undefined
  }

  call<O extends Op>(op: O, args: OpRequest<O>): Promise<OpResult<O>> {
    if (!this.alive)
      return Promise.reject(
        new SyndicateError('ERR_ENCLAVE_CRASHED', `enclave instance ${this.launch.instanceId} has stopped`),
      )
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { op, resolve: resolve as (v: unknown) => void, reject })
      this.proc.send({ id, op, args }, (err) => {
        if (err && this.pending.delete(id)) reject(err)
      })
    })
  }

  private onMessage(raw: unknown): void {
    const msg = ReplyEnvelope.safeParse(raw)
    if (!msg.success) return
    const m = msg.data
    if ('event' in m) {
      if (m.event === 'progress') this.progress.get(m.job)?.(m.phase)
      return
    }
    const p = this.pending.get(m.id)
    if (!p) return
    this.pending.delete(m.id)
    if (!m.ok) {
      const e = new SyndicateError(m.error.code, m.error.message, m.error.details)
      p.reject(e)
      return
    }
    const result = OPS[p.op].res.safeParse(m.result)
    if (result.success) p.resolve(result.data)
    else p.reject(new SyndicateError('ERR_ENCLAVE_IPC', `malformed ${p.op} reply from the enclave`))
  }

  kill(): void {
    if (this.alive) this.proc.kill('SIGKILL')
  }
}

interface JobRecord {
  spec: unknown
  instance: EnclaveInstance
  uploads: Map<string, { policy: SignedUsagePolicy; wrappedKey: Uint8Array; chunks: Uint8Array[] }>
}

export interface ClusterOptions {
  platform: SimulatedPlatform
  /** Instances to keep running (default 2, so that one can fail over to the other). */
  instances?: number
  instance?: InstanceOptions
  log?: (msg: string, fields?: Record<string, unknown>) => void
}

export class EnclaveCluster {
  readonly platform: SimulatedPlatform
  private readonly size: number
  private readonly instanceOptions: InstanceOptions
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void
  private readonly registered: EnclaveInstance[] = []
  private readonly jobs = new Map<string, JobRecord>()
  private readonly loadedModels = new WeakMap<EnclaveInstance, Set<string>>()
  private seq = 0
  private stopped = false
  /** The cluster's public key (X25519 ‖ Ed25519, hex), once the first instance created it. */
  publicKey?: string

  constructor(opts: ClusterOptions) {
    this.platform = opts.platform
    this.size = opts.instances ?? 2
    this.instanceOptions = opts.instance ?? {}
    this.log = opts.log ?? (() => {})
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.size; i++) await this.add()
  }

  /** Live, registered instances. */
  instances(): EnclaveInstance[] {
    return this.registered.filter((i) => i.alive)
  }

  /**
   * Launches an instance and registers it: the first creates the cluster key; every later one gets it from
   * a registered instance only after that instance has verified its evidence.
   */
  async add(opts: InstanceOptions = this.instanceOptions): Promise<EnclaveInstance> {
    const inst = await EnclaveInstance.start(this.platform, `enclave-${++this.seq}`, opts)
    try {
      const donor = this.instances()[0]
      if (!donor) this.publicKey = (await inst.call('cluster.create', {})).publicKey
      else {
        const { nonce } = await donor.call('sync.nonce', {})
        const evidence = await this.quote(inst, nonce, 'instance')
        const { box } = await donor.call('sync.export', { evidence, nonce })
        await inst.call('sync.import', { box })
      }
    } catch (e) {
      inst.kill()
      throw e
    }
    this.registered.push(inst)
    void inst.exited.then(() => this.onExit(inst))
    this.log('enclave instance registered', { instance: inst.launch.instanceId })
    return inst
  }

  private onExit(inst: EnclaveInstance): void {
    const i = this.registered.indexOf(inst)
    if (i >= 0) this.registered.splice(i, 1)
    if (this.stopped) return
    this.log('enclave instance stopped', { instance: inst.launch.instanceId })
    // Keep the cluster at its size; a replacement gets the key from a survivor (none left: the key is gone).
    if (this.instances().length > 0 && this.instances().length < this.size)
      void this.add().catch((e) =>
        this.log('cannot replace an enclave instance', { err: (e as Error).message }),
      )
  }

  private async quote(
    inst: EnclaveInstance,
    nonce: Uint8Array,
    key: 'cluster' | 'instance',
  ): Promise<Evidence> {
    const { publicKey, reportData } = await inst.call('report', { nonce, key })
    return this.platform.quote(inst.launch, publicKey, reportData)
  }

  private pick(): EnclaveInstance {
    const live = this.instances()
    if (live.length === 0)
      throw new SyndicateError('ERR_ENCLAVE_UNAVAILABLE', 'no enclave instance is running on this host')
    const load = (i: EnclaveInstance) => [...this.jobs.values()].filter((j) => j.instance === i).length
    return live.reduce((a, b) => (load(b) < load(a) ? b : a))
  }

  /** Evidence for a data owner's nonce, from the instance that will run `job`. */
  async evidence(job: string, nonce: Uint8Array): Promise<Evidence> {
    const rec = this.jobs.get(job)
    return this.quote(rec?.instance.alive ? rec.instance : this.pick(), nonce, 'cluster')
  }

  async openJob(job: string, spec: unknown): Promise<string> {
    const instance = this.pick()
    this.jobs.set(job, { spec, instance, uploads: new Map() })
    const { specHash } = await instance.call('job.open', { spec })
    return specHash
  }

  private record(job: string): JobRecord {
    const r = this.jobs.get(job)
    if (!r) throw new SyndicateError('ERR_ENCLAVE_JOB', `no enclave job ${job} on this host`)
    return r
  }

  async upload(
    job: string,
    party: string,
    policy: SignedUsagePolicy,
    wrappedKey: Uint8Array,
    chunks: number,
  ) {
    const r = this.record(job)
    r.uploads.set(party, { policy, wrappedKey, chunks: new Array(chunks) })
    await r.instance
      .call('job.upload', { job, party, policy, wrappedKey, chunks })
      .catch((e) => this.tolerate(e))
  }

  async chunk(job: string, party: string, index: number, box: Uint8Array): Promise<void> {
    const r = this.record(job)
    const u = r.uploads.get(party)
    if (!u) throw new SyndicateError('ERR_ENCLAVE_UPLOAD', `${party} sent a chunk before its upload header`)
    u.chunks[index] = box
    await r.instance.call('job.chunk', { job, party, index, box }).catch((e) => this.tolerate(e))
  }

  /** A crashed instance during upload is handled at `run`, which replays everything on another instance. */
  private tolerate(e: unknown): void {
    if ((e as SyndicateError).code !== 'ERR_ENCLAVE_CRASHED') throw e
  }

  /** Runs the job; if its instance crashes, replays the ciphertexts on another instance (twice at most). */
  async run(job: string, onProgress: (phase: string) => void = () => {}): Promise<JobOutputs> {
    const r = this.record(job)
    try {
      for (let attempt = 0; ; attempt++) {
        const inst = r.instance
        inst.progress.set(job, onProgress)
        try {
          if (!inst.alive) throw new SyndicateError('ERR_ENCLAVE_CRASHED', 'the instance stopped')
          return (await inst.call('job.run', { job })) as JobOutputs
        } catch (e) {
          inst.progress.delete(job)
          if ((e as SyndicateError).code !== 'ERR_ENCLAVE_CRASHED' || attempt >= 2) throw e
          r.instance = this.instances().find((i) => i !== inst) ?? this.pick()
          this.log('enclave job fails over', {
            job,
            from: inst.launch.instanceId,
            to: r.instance.launch.instanceId,
          })
          onProgress(
            `instance ${inst.launch.instanceId} stopped; failing over to ${r.instance.launch.instanceId}`,
          )
          await this.replay(job, r)
        }
      }
    } finally {
      r.instance.progress.delete(job)
      this.jobs.delete(job)
    }
  }

  private async replay(job: string, r: JobRecord): Promise<void> {
    await r.instance.call('job.open', { spec: r.spec })
    for (const [party, u] of r.uploads) {
      await r.instance.call('job.upload', {
        job,
        party,
        policy: u.policy,
        wrappedKey: u.wrappedKey,
        chunks: u.chunks.length,
      })
      for (const [index, box] of u.chunks.entries())
        await r.instance.call('job.chunk', { job, party, index, box })
    }
  }

  /** Forgets a job that ended elsewhere (cancelled, a party failed): the enclave drops what it holds. */
  async drop(job: string): Promise<void> {
    const r = this.jobs.get(job)
    this.jobs.delete(job)
    if (r?.instance.alive) await r.instance.call('job.drop', { job }).catch(() => {})
  }

  /** Which instance runs `job` (for tests and the API). */
  instanceOf(job: string): EnclaveInstance | undefined {
    return this.jobs.get(job)?.instance
  }

  /** Online prediction with a model this cluster trained (sealed to the cluster); any instance serves it. */
  async score(
    job: string,
    sealedModel: Uint8Array,
    session: string,
    requester: string,
    rows: Record<string, Uint8Array>,
  ): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      const inst = this.pick()
      try {
        const loaded = this.loadedModels.get(inst) ?? new Set<string>()
        this.loadedModels.set(inst, loaded)
        if (!loaded.has(job)) {
          await inst.call('model.load', { job, sealed: sealedModel })
          loaded.add(job)
        }
        return (await inst.call('score', { job, session, requester, rows })).box
      } catch (e) {
        if ((e as SyndicateError).code !== 'ERR_ENCLAVE_CRASHED' || attempt >= 1) throw e
      }
    }
  }

  async inventory(): Promise<Record<string, Inventory>> {
    const out: Record<string, Inventory> = {}
    for (const i of this.instances()) out[i.launch.instanceId] = await i.call('inventory', {})
    return out
  }

  async stop(): Promise<void> {
    this.stopped = true
    const all = [...this.registered]
    for (const i of all) i.kill()
    await Promise.all(all.map((i) => i.exited))
  }
}
