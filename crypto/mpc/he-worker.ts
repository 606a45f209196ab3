/**
 * The worker thread of `PeerWorker` (he-fixed.ts): a party's peer-side products for fixed-matrix correlations.
 * It builds the same key-free SEAL contexts as the source (the parameters are fixed), keeps the owner's
 * encrypted columns in NTT form, and answers each request with the masked replies. It holds no secret key:
 * what it computes on are the peer's ciphertexts and this party's own masks and plaintexts.
 */
import { parentPort } from 'node:worker_threads'
import type { Ciphertext } from 'node-seal'
import { loadSeal, sealMessage } from '../he/seal.ts'
import { backwardReplies, forwardReply, type WorkerRequest, type WorkerResponse } from './he-fixed.ts'
import { evalContexts, REPLY_SWITCHES } from './he-params.ts'

const port = parentPort!
const { seal } = await loadSeal()
const primes = evalContexts(seal)
const P = primes.length
/** Per key: the owner's columns, index ((c·cols + l)·P + prime). */
const stores = new Map<number, Ciphertext[]>()

function columns(key: number, c: number, j: number, cols: number): Ciphertext[] {
  const cts = stores.get(key)
  if (!cts || cts.length < (c + 1) * cols * P) throw new Error(`no columns stored under ${key}`)
  return Array.from({ length: cols }, (_, l) => cts[(c * cols + l) * P + j])
}

function load(key: number, blobs: Uint8Array[]): void {
  const cts: Ciphertext[] = []
  try {
    for (const [i, blob] of blobs.entries()) {
      const p = primes[i % P]
      const ct = new seal.Ciphertext()
      cts.push(ct)
      ct.loadFromArray(p.ctx, blob)
      if (ct.size() !== 2 || ct.coeffModulusSize() !== p.top.primes.length)
        throw new Error('wrong ciphertext shape')
      p.evaluator.cipherTransformToNttInplace(ct)
    }
  } catch (e) {
    for (const ct of cts) ct.delete()
    throw Object.assign(new Error(sealMessage(e)), { bad: true })
  }
  stores.set(key, cts)
}

port.on('message', (m: WorkerRequest & { seq: number; key?: number }) => {
  const t = performance.now()
  const answer = (r: Omit<WorkerResponse, 'seq' | 'ms'>, transfer: ArrayBuffer[] = []) =>
    port.postMessage({ seq: m.seq, ms: performance.now() - t, ...r }, transfer)
  try {
    switch (m.op) {
      case 'load':
        load(m.key!, m.blobs)
        return answer({ result: m.key })
      case 'fwd': {
        const blob = forwardReply(
          seal,
          primes[m.j],
          columns(m.key, m.c, m.j, m.cols),
          m.slots,
          m.mask,
          REPLY_SWITCHES,
        )
        return answer({ result: blob }, [blob.buffer as ArrayBuffer])
      }
      case 'bwd': {
        const cts = columns(m.key, m.c, m.j, m.cols)
        const blobs = backwardReplies(seal, primes[m.j], cts, m.v, m.masks, REPLY_SWITCHES)
        return answer(
          { result: blobs },
          blobs.map((b) => b.buffer as ArrayBuffer),
        )
      }
      case 'drop':
        for (const ct of stores.get(m.key) ?? []) ct.delete()
        stores.delete(m.key)
        return answer({})
    }
  } catch (e) {
    answer({ error: sealMessage(e), bad: (e as { bad?: boolean }).bad === true })
  }
})
