/**
 * Dealer-free correlations for many products with one fixed matrix that a party holds in the clear — its own
 * feature block X (rows × cols) in vertically partitioned data — over disjoint batches of rows (one epoch of
 * SGD mini-batches). For every batch B it gives shares of a random β (cols values) and of X_B·β (the forward
 * product X_B·w), and of a random β' (|B| values) and of X_Bᵀ·β' (the gradient X_Bᵀ·r); `MpcSession.
 * matmulOwnedRing` turns them into the products with shared w and r, one message from the peer to the owner.
 * It is the owned-product correlation of he-triples.ts, reorganised for a matrix that does not change:
 *
 *  - Once: the owner encrypts X column by column under its own key (slot i of ciphertext (l, c) holds
 *    X[c·N + i][l], N = 8192 slots) and sends it; the peer keeps it in NTT form for the whole session.
 *  - Forward, per epoch: the peer multiplies column l by the plaintext whose slot i is β_b[l] for the batch b
 *    that row c·N + i belongs to, and adds over l. Slot i then holds row i's product with its own batch's β,
 *    for every batch of the epoch at once: one reply per N rows and no encryption at all.
 *  - Backward, per epoch: the peer multiplies every column by the plaintext of its rows' β' entries; slot i of
 *    reply (l, c) holds X[row][l]·β'[row]. Both parties sum their shares over each batch's rows afterwards.
 *
 * Per epoch that is cols·rows/N ciphertext-plaintext products in each direction, where generic or owned
 * triples also pay an encryption per N products and a reply per batch. Replies are masked uniformly in Z_T and
 * switched down two levels exactly as in he-triples.ts (same CRT primes, same circuit-privacy argument: the
 * multiplier here is the peer's β or β', which the noise must not reveal to the owner). The owner's share of β
 * and β' is zero: the peer's random values alone mask its shares of w and r online.
 */
import { Worker } from 'node:worker_threads'
import type { Ciphertext, MainModule } from 'node-seal'
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { sealMessage } from '../he/seal.ts'
import { HE_POLY_DEGREE } from './he-layout.ts'
import type { EvalContext } from './he-params.ts'
import { badMessage, encryptFast, maskedReply, type PrimeContext } from './he-reply.ts'
import type { Prg } from './prg.ts'
import { type Ring, ringRem, ringScale } from './ring.ts'
import { ERR_MPC_BAD_MESSAGE, frame, unframe } from './wire.ts'

/** Shares of a random B and of X·B (X held in the clear by one party); see `HeTripleSource.ownedTriple`. */
export interface OwnedTriple {
  b: Ring
  c: Ring
}

/** What the generator needs from `HeTripleSource`: its SEAL contexts, channel, randomness and CRT helpers. */
export interface HeEngine {
  readonly seal: MainModule
  readonly primes: readonly PrimeContext[]
  readonly ch: PartyChannel
  readonly peer: string
  readonly prg: Prg
  nextId(): string
  /** The thread that runs this party's peer-side products (one per source, started on first use). */
  worker(): PeerWorker
  /** A fresh mask uniform in Z_T per slot: its residues mod each prime and its value mod 2^64. */
  mask(n: number): { residues: BigUint64Array[]; low: Ring }
  /** CRT: the integers with these residues (first n slots), mod 2^64. */
  combine(residues: BigUint64Array[], n: number): Ring
  /** Runs `fn`, counting its time as this party's computation. */
  busy<T>(fn: () => T): T
}

/** Accumulated products per slot are bounded like he-layout's steps: the CRT modulus keeps them exact. */
const MAX_COLS = 1024
const N = HE_POLY_DEGREE

export class FixedMatrix {
  readonly owner: string
  readonly rows: number
  readonly cols: number
  private readonly e: HeEngine
  private readonly mine: boolean
  private readonly chunks: number
  private readonly id: string
  /** Peer only: the worker's handle on the owner's encrypted columns. */
  private key: number | undefined
  private calls = 0

  private constructor(e: HeEngine, owner: string, rows: number, cols: number, id: string, key?: number) {
    this.e = e
    this.owner = owner
    this.mine = owner === e.ch.self
    this.rows = rows
    this.cols = cols
    this.chunks = Math.ceil(rows / N)
    this.id = id
    this.key = key
  }

  /** Setup: the owner (who passes x, rows × cols, row-major) encrypts and sends it; the peer loads it. */
  static async create(
    e: HeEngine,
    owner: string,
    x: Ring | undefined,
    rows: number,
    cols: number,
  ): Promise<FixedMatrix> {
    if (
      !Number.isSafeInteger(rows) ||
      !Number.isSafeInteger(cols) ||
      rows < 1 ||
      cols < 1 ||
      cols > MAX_COLS
    ) {
      throw new SyndicateError(
        'ERR_MPC_SHAPE',
        `a fixed matrix needs 1..${MAX_COLS} columns and at least one row (got ${rows}x${cols})`,
      )
    }
    const mine = owner === e.ch.self
    if (!mine && owner !== e.peer) {
      throw new SyndicateError('ERR_MPC_UNSUPPORTED', `${owner} is not a party of this source`)
    }
    if (mine && x?.length !== rows * cols) {
      throw new SyndicateError('ERR_MPC_SHAPE', `the owner must pass its ${rows}x${cols} matrix`)
    }
    const id = e.nextId()
    const chunks = Math.ceil(rows / N)
    const P = e.primes.length
    if (mine) {
      const blobs = e.busy(() => encryptColumns(e, x!, rows, cols, chunks))
      await e.ch.send(e.peer, `${id}/x`, frame(blobs))
      return new FixedMatrix(e, owner, rows, cols, id)
    }
    const blobs = unframe(await e.ch.recv(owner, `${id}/x`), owner, id, badMessage)
    if (blobs.length !== chunks * cols * P) throw badMessage(owner, id)
    // the peer's products run in its worker thread, which keeps the ciphertexts (in NTT form)
    const key = await e.worker().load(blobs, owner, id)
    return new FixedMatrix(e, owner, rows, cols, id, key)
  }

  /**
   * Forward correlations for disjoint batches of row indices: per batch, shares of β (cols) and of X_B·β
   * (|B| values, in the batch's row order). Both parties pass the same batches.
   */
  async forward(batches: readonly Uint32Array[]): Promise<OwnedTriple[]> {
    const { batchOf, active } = this.assign(batches)
    const tag = `${this.id}/f${this.calls++}`
    const e = this.e
    if (this.mine) {
      const y = await this.receive(tag, active, 1)
      return batches.map((idx) => ({ b: new BigUint64Array(this.cols), c: gather(y[0], idx) }))
    }
    const betas = batches.map(() => e.prg.ring(this.cols))
    const key = this.workerKey()
    const shares = new BigUint64Array(this.chunks * N)
    const betaMod = e.primes.map((p) => betas.map((b) => new Uint32Array(ringRem(b, p.t).buffer)))
    // every chunk's products are queued at once; the replies go out chunk by chunk as they come back
    const pending = active.map((c) => {
      const { residues, low } = e.busy(() => e.mask(N))
      shares.set(ringScale(low, -1n), c * N)
      return Promise.all(
        e.primes.map((_, j) => {
          // slot i of column l: β of row c·N + i's batch (0 for rows in no batch)
          const slots = e.busy(() => forwardSlots(batchOf, betaMod[j], c, this.rows, this.cols))
          return e.worker().forward(key, c, j, this.cols, slots, residues[j])
        }),
      )
    })
    for (const [i, c] of active.entries()) {
      await e.ch.send(this.owner, `${tag}/${c}`, frame(await pending[i]))
    }
    return batches.map((idx, j) => ({ b: betas[j], c: gather(shares, idx) }))
  }

  /**
   * Backward correlations for disjoint batches: per batch, shares of β' (|B| values, in the batch's row order)
   * and of X_Bᵀ·β' (cols values). Both parties pass the same batches.
   */
  async backward(batches: readonly Uint32Array[]): Promise<OwnedTriple[]> {
    const { active } = this.assign(batches)
    const tag = `${this.id}/b${this.calls++}`
    const e = this.e
    const cols = this.cols
    if (this.mine) {
      const y = await this.receive(tag, active, cols)
      return batches.map((idx) => ({ b: new BigUint64Array(idx.length), c: sums(y, idx) }))
    }
    const betas = batches.map((idx) => e.prg.ring(idx.length))
    const v = new BigUint64Array(this.chunks * N)
    const vw = new Uint32Array(v.buffer)
    for (const [j, idx] of batches.entries()) {
      const bw = new Uint32Array(betas[j].buffer)
      for (let k = 0; k < idx.length; k++) {
        vw[2 * idx[k]] = bw[2 * k]
        vw[2 * idx[k] + 1] = bw[2 * k + 1]
      }
    }
    const shares = Array.from({ length: cols }, () => new BigUint64Array(this.chunks * N))
    const key = this.workerKey()
    const pending = active.map((c) => {
      const masks = e.primes.map(() => new BigUint64Array(cols * N))
      e.busy(() => {
        for (let l = 0; l < cols; l++) {
          const { residues, low } = e.mask(N)
          shares[l].set(ringScale(low, -1n), c * N)
          for (const [j, r] of residues.entries()) masks[j].set(r, l * N)
        }
      })
      const chunk = v.subarray(c * N, (c + 1) * N)
      return Promise.all(
        e.primes.map((p, j) => e.worker().backward(key, c, j, cols, ringRem(chunk, p.t), masks[j])),
      ).then((parts) => {
        // reply order: column by column, the primes within each
        const out: Uint8Array[] = []
        for (let l = 0; l < cols; l++) for (const part of parts) out.push(part[l])
        return out
      })
    })
    for (const [i, c] of active.entries()) {
      await e.ch.send(this.owner, `${tag}/${c}`, frame(await pending[i]))
    }
    return batches.map((idx, j) => ({ b: betas[j], c: sums(shares, idx) }))
  }

  /** Releases the owner's ciphertexts in the worker. */
  dispose(): void {
    if (this.key !== undefined) this.e.worker().drop(this.key)
    this.key = undefined
  }

  private workerKey(): number {
    if (this.key === undefined) throw new SyndicateError('ERR_MPC_HE', 'the fixed matrix was disposed')
    return this.key
  }

  /** Owner: decrypts `perChunk` replies (× primes) for every active chunk into `perChunk` slot vectors. */
  private async receive(tag: string, active: number[], perChunk: number): Promise<Ring[]> {
    const e = this.e
    const P = e.primes.length
    const out = Array.from({ length: perChunk }, () => new BigUint64Array(this.chunks * N))
    const ct = new e.seal.Ciphertext()
    const pt = new e.seal.Plaintext()
    try {
      for (const c of active) {
        const id = `${tag}/${c}`
        const blobs = unframe(await e.ch.recv(e.peer, id), e.peer, id, badMessage)
        if (blobs.length !== perChunk * P) throw badMessage(e.peer, id)
        e.busy(() => {
          for (let u = 0; u < perChunk; u++) {
            const residues = e.primes.map((p, j) => {
              try {
                ct.loadFromArray(p.ctx, blobs[u * P + j])
                p.decryptor.decrypt(ct, pt)
              } catch (err) {
                throw badMessage(e.peer, id, sealMessage(err))
              }
              return p.encoder.decodeBigUint64(pt) as BigUint64Array
            })
            out[u].set(e.combine(residues, N), c * N)
          }
        })
      }
    } finally {
      ct.delete()
      pt.delete()
    }
    return out
  }

  /** Checks that the batches are disjoint and in range; each row's batch and the chunks that hold any row. */
  private assign(batches: readonly Uint32Array[]): { batchOf: Int32Array; active: number[] } {
    const batchOf = new Int32Array(this.rows).fill(-1)
    for (const [j, idx] of batches.entries()) {
      // sums() adds 32-bit halves in doubles: exact up to 2^21 terms
      if (idx.length > 1 << 20)
        throw new SyndicateError('ERR_MPC_SHAPE', 'a batch may hold at most 2^20 rows')
      for (const r of idx) {
        if (r >= this.rows || batchOf[r] !== -1) {
          throw new SyndicateError(
            'ERR_MPC_SHAPE',
            `batches must be disjoint sets of rows below ${this.rows} (row ${r} is out of range or repeated)`,
          )
        }
        batchOf[r] = j
      }
    }
    const active: number[] = []
    for (let c = 0; c < this.chunks; c++) {
      if (batchOf.subarray(c * N, Math.min(this.rows, (c + 1) * N)).some((b) => b >= 0)) active.push(c)
    }
    return { batchOf, active }
  }
}

/** Owner: encrypts the columns chunk by chunk, for every prime (symmetric, seeded: half-size ciphertexts). */
function encryptColumns(e: HeEngine, x: Ring, rows: number, cols: number, chunks: number): Uint8Array[] {
  const out: Uint8Array[] = []
  const pt = new e.seal.Plaintext()
  const xw = new Uint32Array(x.buffer, x.byteOffset, 2 * x.length)
  try {
    for (let c = 0; c < chunks; c++) {
      for (let l = 0; l < cols; l++) {
        const col = new BigUint64Array(N)
        const w = new Uint32Array(col.buffer)
        for (let i = 0; i < N && c * N + i < rows; i++) {
          const at = 2 * ((c * N + i) * cols + l)
          w[2 * i] = xw[at]
          w[2 * i + 1] = xw[at + 1]
        }
        for (const p of e.primes) out.push(encryptFast(e.seal, p, ringRem(col, p.t), pt))
      }
    }
  } finally {
    pt.delete()
  }
  return out
}

/** Elements `idx` of v. */
function gather(v: Ring, idx: Uint32Array): Ring {
  const out = new BigUint64Array(idx.length)
  const src = new Uint32Array(v.buffer, v.byteOffset, 2 * v.length)
  const dst = new Uint32Array(out.buffer)
  for (let k = 0; k < idx.length; k++) {
    dst[2 * k] = src[2 * idx[k]]
    dst[2 * k + 1] = src[2 * idx[k] + 1]
  }
  return out
}

/** For each vector in `vs`, the sum mod 2^64 of its elements `idx` (32-bit halves summed exactly in doubles). */
function sums(vs: Ring[], idx: Uint32Array): Ring {
  const out = new BigUint64Array(vs.length)
  for (const [l, v] of vs.entries()) {
    const w = new Uint32Array(v.buffer, v.byteOffset, 2 * v.length)
    let lo = 0
    let hi = 0
    for (let k = 0; k < idx.length; k++) {
      lo += w[2 * idx[k]]
      hi += w[2 * idx[k] + 1]
    }
    out[l] = BigInt.asUintN(64, BigInt(lo) + (BigInt(hi) << 32n))
  }
  return out
}

/** The forward plaintexts of chunk c for one prime: column l's slot i is β[l] of row c·N + i's batch. */
function forwardSlots(
  batchOf: Int32Array,
  betaMod: Uint32Array[],
  c: number,
  rows: number,
  cols: number,
): Ring {
  const slots = new BigUint64Array(cols * N)
  const sw = new Uint32Array(slots.buffer)
  const end = Math.min(N, rows - c * N)
  for (let l = 0; l < cols; l++) {
    for (let i = 0; i < end; i++) {
      const b = batchOf[c * N + i]
      if (b < 0) continue
      sw[2 * (l * N + i)] = betaMod[b][2 * l]
      sw[2 * (l * N + i) + 1] = betaMod[b][2 * l + 1]
    }
  }
  return slots
}

/**
 * Peer side, forward, one chunk and prime: Σ_l column_l · plain(slots of column l), masked and switched down
 * (`cts`: the chunk's columns in NTT form; `slots`: cols × N values below t).
 */
export function forwardReply(
  seal: MainModule,
  p: EvalContext,
  cts: Ciphertext[],
  slots: Ring,
  mask: Ring,
  switches: number,
): Uint8Array {
  const pt = new seal.Plaintext()
  const ptNtt = new seal.Plaintext()
  const acc = new seal.Ciphertext()
  const term = new seal.Ciphertext()
  try {
    for (const [l, ct] of cts.entries()) {
      p.encoder.encode(slots.subarray(l * N, (l + 1) * N), pt)
      p.evaluator.plainTransformToNtt(pt, p.ctx.firstParmsId(), ptNtt)
      p.evaluator.multiplyPlain(ct, ptNtt, l === 0 ? acc : term)
      if (l > 0) p.evaluator.addInplace(acc, term)
    }
    p.evaluator.cipherTransformFromNttInplace(acc)
    return maskedReply(seal, p, acc, mask, switches, pt)
  } finally {
    for (const o of [pt, ptNtt, acc, term]) o.delete()
  }
}

/**
 * Peer side, backward, one chunk and prime: every column times plain(v), each masked (`masks`: cols × N) and
 * switched down; one reply per column.
 */
export function backwardReplies(
  seal: MainModule,
  p: EvalContext,
  cts: Ciphertext[],
  v: Ring,
  masks: Ring,
  switches: number,
): Uint8Array[] {
  const pt = new seal.Plaintext()
  const ptNtt = new seal.Plaintext()
  const prod = new seal.Ciphertext()
  try {
    p.encoder.encode(v, pt)
    p.evaluator.plainTransformToNtt(pt, p.ctx.firstParmsId(), ptNtt)
    return cts.map((ct, l) => {
      p.evaluator.multiplyPlain(ct, ptNtt, prod)
      p.evaluator.cipherTransformFromNttInplace(prod)
      return maskedReply(seal, p, prod, masks.subarray(l * N, (l + 1) * N), switches, pt)
    })
  } finally {
    for (const o of [pt, ptNtt, prod]) o.delete()
  }
}

/** Messages to the worker (he-worker.ts). Blobs and vectors are transferred, not copied. */
export type WorkerRequest =
  | { op: 'load'; blobs: Uint8Array[] }
  | { op: 'fwd'; key: number; c: number; j: number; cols: number; slots: Ring; mask: Ring }
  | { op: 'bwd'; key: number; c: number; j: number; cols: number; v: Ring; masks: Ring }
  | { op: 'drop'; key: number }

/** The worker's answer: a result, or an error (`bad`: the peer's material did not load). */
export interface WorkerResponse {
  seq: number
  result?: unknown
  error?: string
  bad?: boolean
  /** Milliseconds the worker computed for this request. */
  ms: number
}

/**
 * A worker thread for the peer-side products (he-worker.ts): it holds the owner's ciphertexts and computes the
 * masked replies while this thread decrypts, recombines and talks to the peer — on a machine with two cores
 * the two halves of a party's work run at the same time. It keeps the process alive only while requests are
 * pending.
 */
export class PeerWorker {
  /** Milliseconds of computation done in the worker so far. */
  busyMs = 0
  private readonly w: Worker
  private seq = 0
  private nextKey = 0
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private failed: Error | undefined

  constructor() {
    this.w = new Worker(new URL('./he-worker.ts', import.meta.url))
    this.w.unref()
    this.w.on('message', (m: WorkerResponse) => {
      const p = this.pending.get(m.seq)
      if (!p) return
      this.pending.delete(m.seq)
      if (this.pending.size === 0) this.w.unref()
      this.busyMs += m.ms
      if (m.error === undefined) p.resolve(m.result)
      else p.reject(new SyndicateError(m.bad ? ERR_MPC_BAD_MESSAGE : 'ERR_MPC_HE', m.error))
    })
    this.w.on('error', (e) => this.fail(e))
    this.w.on('exit', (code) => this.fail(new Error(`the HE worker exited (${code})`)))
  }

  /** Loads the owner's columns; returns their key. A blob that does not load fails naming the owner. */
  async load(blobs: Uint8Array[], owner: string, id: string): Promise<number> {
    const key = this.nextKey++
    // each blob in a buffer of its own (they are views into one received message), handed over, not copied
    const own = blobs.map((b) => b.slice())
    try {
      await this.call(
        { op: 'load', blobs: own },
        own.map((b) => b.buffer as ArrayBuffer),
        key,
      )
    } catch (err) {
      throw err instanceof SyndicateError && err.code === ERR_MPC_BAD_MESSAGE
        ? badMessage(owner, id, err.message)
        : err
    }
    return key
  }

  forward(key: number, c: number, j: number, cols: number, slots: Ring, mask: Ring): Promise<Uint8Array> {
    return this.call({ op: 'fwd', key, c, j, cols, slots, mask }, [
      slots.buffer as ArrayBuffer,
      mask.buffer as ArrayBuffer,
    ]) as Promise<Uint8Array>
  }

  backward(key: number, c: number, j: number, cols: number, v: Ring, masks: Ring): Promise<Uint8Array[]> {
    return this.call({ op: 'bwd', key, c, j, cols, v, masks }, [
      v.buffer as ArrayBuffer,
      masks.buffer as ArrayBuffer,
    ]) as Promise<Uint8Array[]>
  }

  drop(key: number): void {
    if (!this.failed) void this.call({ op: 'drop', key }, []).catch(() => {})
  }

  terminate(): void {
    this.fail(new SyndicateError('ERR_MPC_HE', 'the HE worker was stopped'))
    void this.w.terminate()
  }

  private call(req: WorkerRequest, transfer: ArrayBuffer[], key?: number): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed)
    const seq = this.seq++
    if (this.pending.size === 0) this.w.ref()
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject })
      this.w.postMessage({ seq, key, ...req }, transfer)
    })
  }

  private fail(e: Error): void {
    if (this.failed) return
    this.failed =
      e instanceof SyndicateError ? e : new SyndicateError('ERR_MPC_HE', `the HE worker failed: ${e.message}`)
    for (const p of this.pending.values()) p.reject(this.failed)
    this.pending.clear()
  }
}
