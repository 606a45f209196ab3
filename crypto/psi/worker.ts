/** PSI worker thread: batches of X25519 scalar multiplications through node:crypto (see x25519.ts). */
import { createHash, diffieHellman, type KeyObject } from 'node:crypto'
import { parentPort } from 'node:worker_threads'
import type { WorkerReply, WorkerTask } from './pool.ts'
import { x25519, x25519PrivateKey, x25519PublicKey } from './x25519.ts'

const HASH_DOMAIN = Buffer.from('syndicate/psi/x25519/v1\0')

const keys = new Map<string, KeyObject>()

function privateKey(scalar: Uint8Array): KeyObject {
  const id = Buffer.from(scalar).toString('hex')
  let k = keys.get(id)
  if (!k) {
    if (keys.size > 16) keys.clear()
    k = x25519PrivateKey(scalar)
    keys.set(id, k)
  }
  return k
}

/** H(id): SHA-256 of domain, salt and id, top bit cleared: a point on the u-line of Curve25519 or its twist. */
function hashToU(salt: Uint8Array, id: string): Buffer {
  const h = createHash('sha256').update(HASH_DOMAIN).update(salt).update(id, 'utf8').digest()
  h[31] &= 0x7f
  return h
}

function mulAll(k: KeyObject, count: number, point: (i: number) => Uint8Array, outBytes: number): Uint8Array {
  const out = new Uint8Array(count * outBytes)
  for (let i = 0; i < count; i++) {
    let r: Buffer
    try {
      r = x25519(k, point(i))
    } catch {
      // OpenSSL refuses low-order inputs (the shared secret would be zero): only a faulty peer sends them.
      throw Object.assign(new Error(`point ${i} has low order`), { index: i })
    }
    out.set(r.subarray(0, outBytes), i * outBytes)
  }
  return out
}

function run(t: WorkerTask): { id: number; out: Uint8Array; ms?: number; cpuMs?: number } {
  const k = privateKey(t.key)
  if (t.op === 'hashMul') {
    const salt = t.salt
    return { id: t.id, out: mulAll(k, t.ids.length, (i) => hashToU(salt, t.ids[i]), t.outBytes) }
  }
  const pts = t.points
  const count = pts.length / 32
  const at = (i: number) => pts.subarray(i * 32, i * 32 + 32)
  if (t.op === 'mul') return { id: t.id, out: mulAll(k, count, at, t.outBytes) }
  // 'bare': the group operation alone, for benchmarks: points imported before the clock starts.
  const pubs = Array.from({ length: count }, (_, i) => x25519PublicKey(at(i)))
  const t0 = performance.now()
  const c0 = process.threadCpuUsage()
  for (const p of pubs) diffieHellman({ privateKey: k, publicKey: p })
  const c = process.threadCpuUsage(c0)
  return { id: t.id, out: new Uint8Array(0), ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 }
}

parentPort!.on('message', (t: WorkerTask) => {
  try {
    const reply = run(t)
    parentPort!.postMessage(reply, [reply.out.buffer as ArrayBuffer])
  } catch (e) {
    const index = (e as { index?: number }).index
    parentPort!.postMessage({ id: t.id, error: (e as Error).message, index } satisfies WorkerReply)
  }
})
