/**
 * `npm run bench -- mpc [--case kernels,online,libp2p,he,lr,nonlinear] [--repeat 3] [--lr-epochs 20]`: the
 * secret-sharing engine.
 *
 *  - kernels: a 1024x64 · 64x32 ring matrix product with three implementations (BigInt on BigUint64Array, 32-bit
 *    limbs with Math.imul, the hand-assembled WebAssembly kernel the engine uses) against Float64 plaintext.
 *  - online: secure matrix products 1024x23 · 23x1 and 1024x64 · 64x32, 2 parties, in-memory channel, dealer
 *    triples prepared offline; online seconds (both parties, this process), bytes sent, rounds.
 *  - libp2p: the same products over real libp2p on 127.0.0.1 (sim/channels.ts).
 *  - he: dealer-free (BFV) matrix-triple generation for those shapes, triples per second.
 *  - lr: projected offline time of 20 epochs of logistic regression on 24,000 x 23 (batches of 1024) from the
 *    measured dealer-free triple times (generic and owned triples), and the measured offline phase of what
 *    SS-LR uses dealer-free (`lr-offline-fixed`, also alone as `--case lr-fixed`; `--lr-epochs N` measures N
 *    epochs and scales to 20): each party's block encrypted once, then per epoch one forward and one backward
 *    exchange per block; and the elementwise triples of its sigmoid polynomial (`lr-offline-sigmoid-triples`).
 *    Then SS-LR's whole dealer-free offline phase (both together, in SS-LR's order) with each party in its own
 *    worker thread, as on two machines (`lr-offline-sslr-threads`, also alone as `--case lr-threads`; this
 *    2-core machine gives each one core).
 *  - nonlinear: sigmoid and comparison on 10,000 elements (online, dealer triples), with the measured error.
 * Every line has baseline_s (plaintext, same run) and ratio = seconds / baseline_s.
 */
import { randomFillSync } from 'node:crypto'
import { parseArgs } from 'node:util'
import { isMainThread, MessageChannel, type MessagePort, Worker, workerData } from 'node:worker_threads'
import {
  type ChannelStats,
  createMemoryChannels,
  emptyStats,
  Mailbox,
  type PartyChannel,
} from '../crypto/channel.ts'
import { DealerSource } from '../crypto/mpc/dealer.ts'
import { HeTripleSource, type OwnedTriple } from '../crypto/mpc/he-triples.ts'
import { lessThanZero, sigmoid } from '../crypto/mpc/nonlinear.ts'
import { ringAdd, ringMatmul, ringTranspose } from '../crypto/mpc/ring.ts'
import { MpcSession, type SharedMatrix } from '../crypto/mpc/session.ts'
import { type CorrelatedSource, type CorrelationRequest, RecordingSource } from '../crypto/mpc/source.ts'
import { startLoopbackChannels } from '../sim/channels.ts'
import { emit, ratio, timeBest } from './report.ts'

const BENCH = 'mpc'
const SHAPES: [number, number, number][] = [
  [1024, 23, 1],
  [1024, 64, 32],
]
const TARGET_ONLINE_RATIO = 20
const TARGET_LR_OFFLINE_S = 60
const LR = { rows: 24_000, features: 23, batch: 1024, epochs: 20 }
const PARTIES = ['a', 'b']

export default async function mpc(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      case: { type: 'string', default: 'kernels,online,libp2p,he,lr,nonlinear' },
      repeat: { type: 'string', default: '5' },
      'lr-epochs': { type: 'string', default: String(LR.epochs) },
    },
  })
  const cases = new Set(values.case!.split(','))
  const repeat = Number(values.repeat)
  if (cases.has('kernels')) await kernels(repeat)
  if (cases.has('online')) for (const s of SHAPES) await online(s, 'memory', repeat)
  if (cases.has('libp2p')) {
    for (const s of SHAPES) {
      await online(s, 'libp2p', repeat).catch((e: unknown) =>
        emit({ bench: BENCH, case: 'matmul-online-libp2p', shape: s.join('x'), error: String(e) }),
      )
    }
  }
  const heTimes = new Map<string, number>()
  if (cases.has('he') || cases.has('lr')) {
    const shapes: [number, number, number][] = cases.has('he') ? [...SHAPES] : []
    if (cases.has('lr')) {
      for (const s of [[LR.batch, LR.features, 1] as const, [LR.features, LR.batch, 1] as const]) {
        if (!shapes.some((t) => t.join() === s.join())) shapes.push([...s])
      }
    }
    await heTriples(shapes, heTimes, cases.has('he'))
  }
  if (cases.has('lr')) {
    await ownedTimes(heTimes)
    lrProjection(heTimes)
  }
  const lrEpochs = Number(values['lr-epochs'])
  if (cases.has('lr') || cases.has('lr-fixed')) {
    await lrFixed(lrEpochs)
    await lrSigmoidTriples(Math.min(lrEpochs, 2))
  }
  if (cases.has('lr') || cases.has('lr-threads')) await lrThreads(lrEpochs)
  if (cases.has('nonlinear')) await nonlinear(10_000)
}

// --- plaintext baselines --------------------------------------------------------------------------------------

function randomReals(n: number, scale = 1): Float64Array {
  const u = new Uint32Array(n)
  randomFillSync(u)
  return Float64Array.from(u, (v) => (v / 2 ** 32 - 0.5) * 2 * scale)
}

function floatMatmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const av = a[i * k + l]
      const row = l * n
      const out = i * n
      for (let j = 0; j < n; j++) c[out + j] += av * b[row + j]
    }
  }
  return c
}

// --- ring matmul alternatives (measured here, not used by the engine) ----------------------------------------

function bigintMatmul(a: BigUint64Array, b: BigUint64Array, m: number, k: number, n: number): BigUint64Array {
  const c = new BigUint64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const av = a[i * k + l]
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[l * n + j] // the typed array wraps mod 2^64 on store
    }
  }
  return c
}

/** 64-bit multiply-accumulate with 32-bit limbs: lo/hi pairs, 16-bit pieces for the exact low product. */
function limbMatmul(a: Uint32Array, b: Uint32Array, m: number, k: number, n: number): Uint32Array {
  const c = new Uint32Array(2 * m * n)
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const al = a[2 * (i * k + l)]
      const ah = a[2 * (i * k + l) + 1]
      const a0 = al & 0xffff
      const a1 = al >>> 16
      for (let j = 0; j < n; j++) {
        const bi = 2 * (l * n + j)
        const bl = b[bi]
        const bh = b[bi + 1]
        const b0 = bl & 0xffff
        const b1 = bl >>> 16
        // al·bl as a 64-bit value from 16-bit partial products
        const p00 = a0 * b0
        const mid = a1 * b0 + a0 * b1 // < 2^33, exact in a double
        const lo = p00 + (mid % 65536) * 65536
        const loWord = lo >>> 0
        const carry = Math.floor(lo / 4294967296) + Math.floor(mid / 65536)
        const hiWord = (a1 * b1 + carry + Math.imul(al, bh) + Math.imul(ah, bl)) >>> 0
        const ci = 2 * (i * n + j)
        const sum = c[ci] + loWord
        c[ci] = sum >>> 0
        c[ci + 1] = (c[ci + 1] + hiWord + (sum > 0xffffffff ? 1 : 0)) >>> 0
      }
    }
  }
  return c
}

async function kernels(repeat: number): Promise<void> {
  const [m, k, n] = [1024, 64, 32]
  const fa = randomReals(m * k)
  const fb = randomReals(k * n)
  const base = await timeBest(() => floatMatmul(fa, fb, m, k, n), repeat)
  const a = new BigUint64Array(m * k)
  const b = new BigUint64Array(k * n)
  randomFillSync(a)
  randomFillSync(b)
  const want = ringMatmul(a, b, m, k, n)
  const la = new Uint32Array(a.buffer)
  const lb = new Uint32Array(b.buffer)
  const limbs = new BigUint64Array(limbMatmul(la, lb, m, k, n).buffer)
  const big = bigintMatmul(a, b, m, k, n)
  const agree = limbs.every((v, i) => v === want[i]) && big.every((v, i) => v === want[i])
  const impls: [string, () => unknown][] = [
    ['bigint', () => bigintMatmul(a, b, m, k, n)],
    ['limbs32', () => limbMatmul(la, lb, m, k, n)],
    ['wasm', () => ringMatmul(a, b, m, k, n)],
  ]
  for (const [impl, fn] of impls) {
    const s = await timeBest(fn, impl === 'bigint' ? 1 : repeat)
    emit({
      bench: BENCH,
      case: `kernel-${impl}`,
      shape: `${m}x${k}x${n}`,
      seconds: s,
      baseline_s: base,
      ratio: ratio(s, base),
      agree,
    })
  }
}

// --- online secure matrix products ------------------------------------------------------------------------------

async function sessions(
  channels: Map<string, PartyChannel>,
  makeSource: (ch: PartyChannel) => Promise<CorrelatedSource>,
  tag: string,
): Promise<MpcSession[]> {
  return Promise.all(
    ['a', 'b'].map(async (p) => {
      const ch = channels.get(p)!
      return MpcSession.create(ch, { source: await makeSource(ch), tag })
    }),
  )
}

function bytesSent(ss: MpcSession[]): number {
  return ss.reduce((s, x) => s + x.ch.stats().bytesSent, 0)
}

async function online(
  [m, k, n]: [number, number, number],
  transport: 'memory' | 'libp2p',
  repeat: number,
): Promise<void> {
  let channels: Map<string, PartyChannel>
  let stop = async () => {}
  if (transport === 'memory') channels = createMemoryChannels(['a', 'b'])
  else ({ channels, stop } = await startLoopbackChannels(['a', 'b']))
  try {
    const fx = randomReals(m * k)
    const fy = randomReals(k * n)
    const base = await timeBest(() => floatMatmul(fx, fy, m, k, n), Math.max(repeat, 5))
    const ss = await sessions(
      channels,
      (ch) => DealerSource.create(ch, { dealer: 'a', tag: `d${m}x${k}x${n}` }),
      `s${m}x${k}x${n}`,
    )
    const X = ss.map((s) => s.share('a', m, k, s.self === 'a' ? fx : undefined))
    const Y = ss.map((s) => s.share('b', k, n, s.self === 'b' ? fy : undefined))
    let best = Number.POSITIVE_INFINITY
    let bytes = 0
    let rounds = 0
    let offline = Number.POSITIVE_INFINITY
    let result: SharedMatrix[] = []
    for (let r = 0; r < repeat; r++) {
      const plan: CorrelationRequest[] = [{ kind: 'matmul', m, k, n }]
      const t0 = performance.now()
      await Promise.all(ss.map((s) => s.source.prepare(plan)))
      const t1 = performance.now()
      const b0 = bytesSent(ss)
      const r0 = ss[0].rounds
      result = await Promise.all(ss.map((s, i) => s.matmul(X[i], Y[i])))
      const t2 = performance.now()
      offline = Math.min(offline, (t1 - t0) / 1000)
      if ((t2 - t1) / 1000 < best) {
        best = (t2 - t1) / 1000
        bytes = bytesSent(ss) - b0
        rounds = ss[0].rounds - r0
      }
    }
    const z = await Promise.all(ss.map((s, i) => s.reveal(result[i])))
    const want = floatMatmul(fx, fy, m, k, n)
    let err = 0
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(z[0]![i] - want[i]))
    emit({
      bench: BENCH,
      case: `matmul-online-${transport}`,
      shape: `${m}x${k}x${n}`,
      parties: 2,
      seconds: best,
      bytes,
      rounds,
      offline_dealer_s: offline,
      max_abs_err: err,
      baseline_s: base,
      ratio: ratio(best, base),
      target: m === 1024 && n === 32 && transport === 'memory' ? TARGET_ONLINE_RATIO : undefined,
    })
  } finally {
    await stop()
  }
}

// --- dealer-free triples ----------------------------------------------------------------------------------------

async function heTriples(
  shapes: [number, number, number][],
  times: Map<string, number>,
  print: boolean,
): Promise<void> {
  const channels = createMemoryChannels(['a', 'b'])
  const t0 = performance.now()
  const sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p)!)))
  const setup = (performance.now() - t0) / 1000
  try {
    // warm the JIT and SEAL's memory pools on a small triple first
    await Promise.all(sources.map((src) => src.matmulTriple(64, 23, 1)))
    for (const [m, k, n] of shapes) {
      const b0 = channels.get('a')!.stats().bytesSent + channels.get('b')!.stats().bytesSent
      const tries = m * k * n <= 100_000 ? 3 : 1
      const busy0 = sources.map((src) => src.busySeconds())
      const s = await timeBest(() => Promise.all(sources.map((src) => src.matmulTriple(m, k, n))), tries)
      const perParty = Math.max(...sources.map((src, i) => (src.busySeconds() - busy0[i]) / tries))
      const bytes = (channels.get('a')!.stats().bytesSent + channels.get('b')!.stats().bytesSent - b0) / tries
      times.set(`${m}x${k}x${n}`, s)
      times.set(`${m}x${k}x${n}/party`, perParty)
      if (!print || !SHAPES.some((t) => t.join() === [m, k, n].join())) continue
      const fx = randomReals(m * k)
      const fy = randomReals(k * n)
      const base = await timeBest(() => floatMatmul(fx, fy, m, k, n), 3)
      emit({
        bench: BENCH,
        case: 'he-matmul-triple',
        shape: `${m}x${k}x${n}`,
        seconds: s,
        triples_per_s: 1 / s,
        busiest_party_s: perParty,
        macs_per_s: (m * k * n) / s,
        bytes,
        setup_s: setup,
        baseline_s: base,
        ratio: ratio(s, base),
      })
    }
  } finally {
    for (const s of sources) s.dispose()
  }
}

/** Owned products (a party's own features times shared weights or errors) for the LR batch shapes. */
async function ownedTimes(times: Map<string, number>): Promise<void> {
  const channels = createMemoryChannels(['a', 'b'])
  const sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p)!)))
  try {
    await Promise.all(
      sources.map((src, i) =>
        src.ownedTriple('a', i === 0 ? new BigUint64Array(64 * 23) : undefined, 64, 23, 1),
      ),
    )
    for (const [m, k] of [
      [LR.batch, LR.features],
      [LR.features, LR.batch],
    ]) {
      const x = new BigUint64Array(m * k)
      randomFillSync(x)
      const busy0 = sources.map((src) => src.busySeconds())
      const s = await timeBest(
        () => Promise.all(sources.map((src, i) => src.ownedTriple('a', i === 0 ? x : undefined, m, k, 1))),
        3,
      )
      times.set(`owned:${m}x${k}x1`, s)
      times.set(
        `owned:${m}x${k}x1/party`,
        Math.max(...sources.map((src, i) => (src.busySeconds() - busy0[i]) / 3)),
      )
    }
  } finally {
    for (const s of sources) s.dispose()
  }
}

function lrProjection(times: Map<string, number>): void {
  const batches = Math.ceil(LR.rows / LR.batch)
  const fwd = times.get(`${LR.batch}x${LR.features}x1`)!
  const bwd = times.get(`${LR.features}x${LR.batch}x1`)!
  const projected = LR.epochs * batches * (fwd + bwd)
  const perParty =
    LR.epochs *
    batches *
    (times.get(`${LR.batch}x${LR.features}x1/party`)! + times.get(`${LR.features}x${LR.batch}x1/party`)!)
  const base = lrPlainSeconds()
  const owned = (suffix: string) =>
    LR.epochs *
    batches *
    (times.get(`owned:${LR.batch}x${LR.features}x1${suffix}`)! +
      times.get(`owned:${LR.features}x${LR.batch}x1${suffix}`)!)
  emit({
    bench: BENCH,
    case: 'lr-offline-projection-owned',
    rows: LR.rows,
    features: LR.features,
    batch: LR.batch,
    epochs: LR.epochs,
    seconds: owned(''),
    busiest_party_s: owned('/party'),
    baseline_s: base,
    ratio: ratio(owned(''), base),
    target: TARGET_LR_OFFLINE_S,
  })
  emit({
    bench: BENCH,
    case: 'lr-offline-projection',
    rows: LR.rows,
    features: LR.features,
    batch: LR.batch,
    epochs: LR.epochs,
    triple_fwd_s: fwd,
    triple_bwd_s: bwd,
    seconds: projected,
    busiest_party_s: perParty,
    baseline_s: base,
    ratio: ratio(projected, base),
    target: TARGET_LR_OFFLINE_S,
  })
}

/** Plaintext baseline of the LR projections: every batch's forward and backward product, 20 epochs. */
function lrPlainSeconds(): number {
  const batches = Math.ceil(LR.rows / LR.batch)
  const x = randomReals(LR.batch * LR.features)
  const w = randomReals(LR.features)
  const e = randomReals(LR.batch)
  const t0 = performance.now()
  for (let ep = 0; ep < LR.epochs; ep++) {
    for (let b = 0; b < batches; b++) {
      floatMatmul(x, w, LR.batch, LR.features, 1)
      floatMatmul(x, e, LR.features, LR.batch, 1)
    }
  }
  return (performance.now() - t0) / 1000
}

/** Seeded shuffles of the rows cut into batches, as SS-LR's training order (one array of batches per epoch). */
function epochBatches(epochs: number, seed = 1): Uint32Array[][] {
  const out: Uint32Array[][] = []
  const order = Uint32Array.from({ length: LR.rows }, (_, i) => i)
  let state = seed >>> 0
  const next = () => {
    // xorshift32: a reproducible order both threads agree on (the order itself is public)
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return state >>> 0
  }
  for (let e = 0; e < epochs; e++) {
    for (let i = LR.rows - 1; i > 0; i--) {
      const j = next() % (i + 1)
      ;[order[i], order[j]] = [order[j], order[i]]
    }
    const batches: Uint32Array[] = []
    for (let s = 0; s < LR.rows; s += LR.batch) batches.push(order.slice(s, s + LR.batch))
    out.push(batches)
  }
  return out
}

/**
 * The dealer-free offline phase SS-LR runs (learning/joint/vertical/sslr.ts): party a owns 13 feature columns
 * and party b 10 (the bundled data's vertical split); each block is encrypted once by its owner, then every
 * epoch takes one forward and one backward exchange per block for all its batches. Measured, both parties in
 * this one thread (`seconds`), with each party's own compute time (`busiest_party_s`: the wall time when the
 * parties run on separate machines approaches it). Checks one batch's correlations for exactness.
 */
async function lrFixed(epochs: number): Promise<void> {
  const channels = createMemoryChannels(['a', 'b'])
  const sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p)!)))
  const split = { a: 13, b: LR.features - 13 }
  const owned = new Map<string, BigUint64Array>()
  for (const [p, d] of Object.entries(split)) {
    const x = new BigUint64Array(LR.rows * d)
    // fixed-point features in [-6, 6] at 16 fractional bits, as SS-LR encodes its clipped columns
    const r = randomReals(LR.rows * d, 6)
    for (let i = 0; i < r.length; i++) x[i] = BigInt.asUintN(64, BigInt(Math.round(r[i] * 65536)))
    owned.set(p, x)
  }
  const bytes = () => channels.get('a')!.stats().bytesSent + channels.get('b')!.stats().bytesSent
  try {
    const plan = epochBatches(epochs)
    const t0 = performance.now()
    const fixed = await Promise.all(
      Object.entries(split).map(([owner, d]) =>
        Promise.all(
          sources.map((src, i) =>
            src.fixedMatrix(owner, PARTIES[i] === owner ? owned.get(owner) : undefined, LR.rows, d),
          ),
        ),
      ),
    )
    const setup = (performance.now() - t0) / 1000
    const setupBusy = sources.map((s) => s.busySeconds())
    const setupBytes = bytes()
    let check: { fwd: OwnedTriple[][]; bwd: OwnedTriple[][] } | undefined
    for (const batches of plan) {
      await Promise.all(
        fixed.map(async (pair, bi) => {
          const fwd = await Promise.all(pair.map((f) => f.forward(batches)))
          const bwd = await Promise.all(pair.map((f) => f.backward(batches)))
          if (bi === 0) check ??= { fwd, bwd }
        }),
      )
    }
    const total = (performance.now() - t0) / 1000
    const perEpoch = (total - setup) / epochs
    const busy = sources.map((s, i) => (s.busySeconds() - setupBusy[i]) / epochs)
    const seconds = setup + perEpoch * LR.epochs
    const busiest = Math.max(...setupBusy.map((b, i) => b + busy[i] * LR.epochs))
    const exact = check !== undefined && exactOwned(owned.get('a')!, split.a, plan[0][0], check)
    for (const pair of fixed) for (const f of pair) f.dispose()
    const base = lrPlainSeconds()
    emit({
      bench: BENCH,
      case: 'lr-offline-fixed',
      rows: LR.rows,
      features: LR.features,
      batch: LR.batch,
      epochs: LR.epochs,
      measured_epochs: epochs,
      setup_s: setup,
      epoch_s: perEpoch,
      seconds,
      busiest_party_s: busiest,
      bytes: setupBytes + ((bytes() - setupBytes) * LR.epochs) / epochs,
      exact,
      baseline_s: base,
      ratio: ratio(seconds, base),
      target: TARGET_LR_OFFLINE_S,
    })
  } finally {
    for (const s of sources) s.dispose()
  }
}

/** Whether the first batch's forward and backward correlations of the block owned by a add up exactly. */
function exactOwned(
  x: BigUint64Array,
  d: number,
  idx: Uint32Array,
  check: { fwd: OwnedTriple[][]; bwd: OwnedTriple[][] },
): boolean {
  const m = idx.length
  const xb = new BigUint64Array(m * d)
  for (let k = 0; k < m; k++) xb.set(x.subarray(idx[k] * d, idx[k] * d + d), k * d)
  const [f0, f1] = check.fwd.map((t) => t[0])
  const [b0, b1] = check.bwd.map((t) => t[0])
  const fwd = ringMatmul(xb, ringAdd(f0.b, f1.b), m, d, 1)
  const bwd = ringMatmul(ringTranspose(xb, m, d), ringAdd(b0.b, b1.b), d, m, 1)
  const same = (u: BigUint64Array, v: BigUint64Array) =>
    u.length === v.length && u.every((e, i) => e === v[i])
  return same(ringAdd(f0.c, f1.c), fwd) && same(ringAdd(b0.c, b1.c), bwd)
}

/** A PartyChannel between two threads of this process over a MessagePort (payloads copied, as on a network). */
function portChannel(self: string, peer: string, port: MessagePort): PartyChannel {
  const box = new Mailbox()
  const stats: ChannelStats = emptyStats()
  port.on('message', (m: { tag: string; payload: Uint8Array }) => {
    stats.bytesReceived += m.payload.byteLength
    stats.messagesReceived++
    box.deliver(peer, m.tag, m.payload)
  })
  return {
    self,
    parties: PARTIES,
    async send(_to, tag, payload) {
      stats.bytesSent += payload.byteLength
      stats.messagesSent++
      const copy = payload.slice()
      port.postMessage({ tag, payload: copy }, [copy.buffer])
    },
    recv: (_from, tag) => box.take(peer, tag),
    stats: () => ({ ...stats }),
    close(reason) {
      box.close(reason ?? new Error('closed'))
      port.close()
    },
  }
}

interface ThreadResult {
  setup_s: number
  sigmoid_s: number
  fixed_s: number
  /** Compute seconds while encrypting the own block, and in the per-epoch phases. */
  setup_busy_s: number
  busy_s: number
  /** Bytes sent while encrypting the own block, and in the per-epoch phases. */
  setup_bytes: number
  epoch_bytes: number
}

/**
 * One party of SS-LR's dealer-free offline phase in a worker thread: the sigmoid polynomial's elementwise
 * triples (prepared as SS-LR's plan), then its own block encrypted once and `epochs` epochs of forward and
 * backward correlations for both blocks at once (as sslr.ts does).
 */
async function partyThread(data: { self: string; port: MessagePort; epochs: number }): Promise<void> {
  const { self, port, epochs } = data
  const peer = PARTIES.find((p) => p !== self)!
  const parent = (await import('node:worker_threads')).parentPort!
  const ch = portChannel(self, peer, port)
  const source = await HeTripleSource.create(ch)
  const split: Record<string, number> = { a: 13, b: LR.features - 13 }
  const x = new BigUint64Array(LR.rows * split[self])
  const r = randomReals(x.length, 6)
  for (let i = 0; i < r.length; i++) x[i] = BigInt.asUintN(64, BigInt(Math.round(r[i] * 65536)))
  // both parties draw the same batch order (in SS-LR it comes from the job's seed)
  const plan = epochBatches(epochs, 7)
  const mulPlan: CorrelationRequest[] = []
  for (const batches of plan)
    for (const b of batches) for (let i = 0; i < 3; i++) mulPlan.push({ kind: 'mul', n: b.length })
  parent.postMessage('ready')
  await new Promise((resolve) => parent.once('message', resolve))
  const t0 = performance.now()
  await source.prepare(mulPlan)
  const t1 = performance.now()
  const b1 = ch.stats().bytesSent
  const busy1 = source.busySeconds()
  const fixed = await Promise.all(
    PARTIES.map((owner) => source.fixedMatrix(owner, owner === self ? x : undefined, LR.rows, split[owner])),
  )
  const t2 = performance.now()
  const b2 = ch.stats().bytesSent
  const busySetup = source.busySeconds()
  await Promise.all(
    fixed.map(async (f) => {
      for (const batches of plan) {
        await f.forward(batches)
        await f.backward(batches)
      }
    }),
  )
  const t3 = performance.now()
  const result: ThreadResult = {
    sigmoid_s: (t1 - t0) / 1000,
    setup_s: (t2 - t1) / 1000,
    fixed_s: (t3 - t2) / 1000,
    setup_busy_s: busySetup - busy1,
    busy_s: source.busySeconds() - (busySetup - busy1),
    setup_bytes: b2 - b1,
    epoch_bytes: ch.stats().bytesSent - (b2 - b1),
  }
  for (const f of fixed) f.dispose()
  source.dispose()
  parent.postMessage(result)
  port.close()
}

/** SS-LR's dealer-free offline phase, each party in its own thread; `epochs` measured, scaled to 20. */
async function lrThreads(epochs: number): Promise<void> {
  const { port1, port2 } = new MessageChannel()
  const workers = PARTIES.map(
    (self, i) =>
      new Worker(new URL(import.meta.url), {
        workerData: { mpcParty: { self, port: i === 0 ? port1 : port2, epochs } },
        transferList: [i === 0 ? port1 : port2],
      }),
  )
  const next = (w: Worker) =>
    new Promise<unknown>((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
  try {
    await Promise.all(workers.map(next))
    const t0 = performance.now()
    const done = workers.map((w) => next(w) as Promise<ThreadResult>)
    for (const w of workers) w.postMessage('go')
    const results = await Promise.all(done)
    const wall = (performance.now() - t0) / 1000
    const setup = Math.max(...results.map((r) => r.setup_s))
    const scale = LR.epochs / epochs
    const seconds = setup + (wall - setup) * scale
    const base = lrPlainSeconds()
    emit({
      bench: BENCH,
      case: 'lr-offline-sslr-threads',
      rows: LR.rows,
      features: LR.features,
      batch: LR.batch,
      epochs: LR.epochs,
      measured_epochs: epochs,
      parties: 2,
      sigmoid_triples_s: Math.max(...results.map((r) => r.sigmoid_s)) * scale,
      setup_s: setup,
      fixed_matrix_s: Math.max(...results.map((r) => r.fixed_s)) * scale,
      seconds,
      busiest_party_s: Math.max(...results.map((r) => r.setup_busy_s + r.busy_s * scale)),
      bytes: results.reduce((t, r) => t + r.setup_bytes + r.epoch_bytes * scale, 0),
      baseline_s: base,
      ratio: ratio(seconds, base),
      target: TARGET_LR_OFFLINE_S,
    })
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

/**
 * The elementwise triples of SS-LR's sigmoid polynomial (three 1024-element products per batch), prepared as
 * SS-LR prepares its plan: `epochs` epochs measured, scaled to 20.
 */
async function lrSigmoidTriples(epochs: number): Promise<void> {
  const channels = createMemoryChannels(['a', 'b'])
  const sources = await Promise.all(['a', 'b'].map((p) => HeTripleSource.create(channels.get(p)!)))
  try {
    const batches = Math.ceil(LR.rows / LR.batch)
    const plan: CorrelationRequest[] = []
    for (let i = 0; i < epochs * batches * 3; i++) plan.push({ kind: 'mul', n: LR.batch })
    const t0 = performance.now()
    await Promise.all(sources.map((s) => s.prepare(plan)))
    const seconds = (((performance.now() - t0) / 1000) * LR.epochs) / epochs
    const busiest = (Math.max(...sources.map((s) => s.busySeconds())) * LR.epochs) / epochs
    const x = randomReals(LR.rows)
    const y = randomReals(LR.rows)
    const out = new Float64Array(LR.rows)
    const b0 = performance.now()
    for (let e = 0; e < LR.epochs; e++) for (let i = 0; i < LR.rows; i++) out[i] = x[i] * y[i] * x[i]
    const base = (performance.now() - b0) / 1000
    emit({
      bench: BENCH,
      case: 'lr-offline-sigmoid-triples',
      rows: LR.rows,
      batch: LR.batch,
      epochs: LR.epochs,
      measured_epochs: epochs,
      mul_triples: LR.epochs * batches * 3 * LR.batch,
      seconds,
      busiest_party_s: busiest,
      baseline_s: base,
      ratio: ratio(seconds, base),
    })
  } finally {
    for (const s of sources) s.dispose()
  }
}

// --- sigmoid and comparison -------------------------------------------------------------------------------------

async function nonlinear(n: number): Promise<void> {
  const xs = randomReals(n, 12)
  const plainSig = new Float64Array(n)
  const plainCmp = new Float64Array(n)
  const baseSig = await timeBest(() => {
    for (let i = 0; i < n; i++) plainSig[i] = 1 / (1 + Math.exp(-xs[i]))
  }, 5)
  const baseCmp = await timeBest(() => {
    for (let i = 0; i < n; i++) plainCmp[i] = xs[i] < 0 ? 1 : 0
  }, 5)
  const cases: [string, (s: MpcSession, x: SharedMatrix) => Promise<SharedMatrix>, Float64Array, number][] = [
    ['sigmoid', sigmoid, plainSig, baseSig],
    ['compare', lessThanZero, plainCmp, baseCmp],
  ]
  for (const [name, fn, want, base] of cases) {
    const channels = createMemoryChannels(['a', 'b'])
    const recorders: RecordingSource[] = []
    const ss = await sessions(
      channels,
      async (ch) => {
        const r = new RecordingSource(await DealerSource.create(ch, { dealer: 'a' }))
        recorders.push(r)
        return r
      },
      'nl',
    )
    const X = ss.map((s) => s.share('a', 1, n, s.self === 'a' ? xs : undefined))
    // a first run records the correlation plan; prepare it offline, then time the online run alone
    await Promise.all(ss.map((s, i) => fn(s, X[i])))
    const plan = [...recorders[0].plan]
    const t0 = performance.now()
    await Promise.all(recorders.map((r) => r.prepare([...r.plan])))
    const offline = (performance.now() - t0) / 1000
    const b0 = bytesSent(ss)
    const r0 = ss[0].rounds
    const t1 = performance.now()
    const out = await Promise.all(ss.map((s, i) => fn(s, X[i])))
    const secs = (performance.now() - t1) / 1000
    const bytes = bytesSent(ss) - b0
    const rounds = ss[0].rounds - r0
    const got = (await Promise.all(ss.map((s, i) => s.reveal(out[i]))))[0]!
    let err = 0
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(got[i] - want[i]))
    emit({
      bench: BENCH,
      case: `${name}-online`,
      elements: n,
      parties: 2,
      seconds: secs,
      offline_dealer_s: offline,
      mul_triples: plan.reduce((t, q) => t + (q.kind === 'mul' ? q.n : 0), 0),
      and_triples: plan.reduce((t, q) => t + (q.kind === 'and' ? q.n : 0), 0),
      bytes,
      rounds,
      max_abs_err: err,
      baseline_s: base,
      ratio: ratio(secs, base),
    })
  }
}

// Run as a worker thread by `lrThreads`: one party of the offline phase.
const party = (workerData as { mpcParty?: { self: string; port: MessagePort; epochs: number } } | null)
  ?.mpcParty
if (!isMainThread && party) await partyThread(party)
