/**
 * Arithmetic in the ring Z(2^64) on `BigUint64Array` vectors (matrices are row-major).
 *
 * Per-element BigInt arithmetic allocates on every operation and is slow in V8 (docs/mpc.md has the numbers),
 * so the hot loops run in a small WebAssembly module whose native i64 operations wrap mod 2^64 exactly as the
 * ring requires. The module is assembled here from bytes (no toolchain download). Each kernel copies its
 * operands into linear memory, runs and copies the result out; the copies run at memcpy speed. JS touches
 * elements only through 32-bit views (transpose, bits), never as BigInt.
 */
import { SyndicateError } from '../errors.ts'

export type Ring = BigUint64Array

// --- a minimal WebAssembly assembler ------------------------------------------------------------------------

const I32 = 0x7f
const I64 = 0x7e
const VOID = 0x40
const BLOCK = 0x02
const LOOP = 0x03
const BR_IF = 0x0d
const END = 0x0b
const I32_CONST = 0x41
const I64_CONST = 0x42
const I32_EQZ = 0x45
const I32_LT_U = 0x49
const I32_ADD = 0x6a
const I32_SUB = 0x6b
const I64_LOAD = [0x29, 0x03, 0x00]
const I64_STORE = [0x37, 0x03, 0x00]
const I64_ADD = 0x7c
const I64_SUB = 0x7d
const I64_MUL = 0x7e
const I64_SHR_S = 0x87
const I64_SHR_U = 0x88
const I64_REM_U = 0x82
const I64_AND = 0x83
const I64_XOR = 0x85
const I64_SHL = 0x86

function uleb(n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()]
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body]
const name = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))]

interface Kernel {
  name: string
  params: number[]
  locals: number[]
  code: number[]
}

function assemble(kernels: Kernel[]): Uint8Array<ArrayBuffer> {
  const types = kernels.map((k) => [0x60, ...vec(k.params.map((p) => [p])), 0x00])
  const imports = vec([[...name('env'), ...name('mem'), 0x02, 0x00, 0x01]]) // memory, at least 1 page
  const exports = vec(kernels.map((k, i) => [...name(k.name), 0x00, ...uleb(i)]))
  const bodies = kernels.map((k) => {
    const body = [...vec(k.locals.map((t) => [0x01, t])), ...k.code, END]
    return [...uleb(body.length), ...body]
  })
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, vec(kernels.map((_, i) => uleb(i)))),
    ...section(7, exports),
    ...section(10, vec(bodies)),
  ])
}

const get = (i: number) => [0x20, i]
const set = (i: number) => [0x21, i]
const tee = (i: number) => [0x22, i]
const bump = (i: number, by: number[]) => [...get(i), ...by, I32_ADD, ...set(i)]
const eight = [I32_CONST, 8]

/** A loop over byte offsets [0, bytes) with local `i`; `store` pushes the address, `value` the i64 to store. */
function mapLoop(bytes: number, i: number, out: number, value: number[]): number[] {
  return [
    ...[BLOCK, VOID, ...get(bytes), I32_EQZ, BR_IF, 0, LOOP, VOID],
    ...[...get(out), ...get(i), I32_ADD, ...value, ...I64_STORE],
    ...[...get(i), ...eight, I32_ADD, ...tee(i), ...get(bytes), I32_LT_U, BR_IF, 0, END, END],
  ]
}

const load = (ptr: number, i: number) => [...get(ptr), ...get(i), I32_ADD, ...I64_LOAD]

/** (a, b, out, bytes): out = a OP b elementwise. */
function binop(kname: string, op: number): Kernel {
  return {
    name: kname,
    params: [I32, I32, I32, I32],
    locals: [I32],
    code: mapLoop(3, 4, 2, [...load(0, 4), ...load(1, 4), op]),
  }
}

/** (a, out, bytes, s): out = a * s for a scalar s. */
const scale: Kernel = {
  name: 'scale',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [...load(0, 4), ...get(3), I64_MUL]),
}

/** (a, out, bytes, f): out = a >>s f; `nsar`: out = -((-a) >>s f), SecureML's rule for the second party. */
const sar: Kernel = {
  name: 'sar',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [...load(0, 4), ...get(3), I64_SHR_S]),
}
const shr: Kernel = {
  name: 'shr',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [...load(0, 4), ...get(3), I64_SHR_U]),
}
const remu: Kernel = {
  name: 'remu',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [...load(0, 4), ...get(3), I64_REM_U]),
}
const shl: Kernel = {
  name: 'shl',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [...load(0, 4), ...get(3), I64_SHL]),
}
const nsar: Kernel = {
  name: 'nsar',
  params: [I32, I32, I32, I64],
  locals: [I32],
  code: mapLoop(2, 4, 1, [I64_CONST, 0, I64_CONST, 0, ...load(0, 4), I64_SUB, ...get(3), I64_SHR_S, I64_SUB]),
}

/**
 * (a, c, out, bytes, q, d0, d1, d2): out = (c + Σ_k d_k·limb_k(a mod q)) mod q, limbs of 15 bits (three of
 * them cover q < 2^45; d_k = s·2^(15k) mod q): a·s mod q without 128-bit products, every term below 2^60.
 */
const mulAddMod: Kernel = (() => {
  const [a, c, out, bytes, q, d0, d1, d2, i, r] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  const LIMB = [I64_CONST, 0xff, 0xff, 0x01] // 0x7fff
  const term = (shift: number, d: number, mask: boolean) => [
    ...get(r),
    ...(shift ? [I64_CONST, shift, I64_SHR_U] : []),
    ...(mask ? [...LIMB, I64_AND] : []),
    ...get(d),
    I64_MUL,
    ...get(q),
    I64_REM_U,
    I64_ADD,
  ]
  return {
    name: 'muladdmod',
    params: [I32, I32, I32, I32, I64, I64, I64, I64],
    locals: [I32, I64],
    code: mapLoop(bytes, i, out, [
      ...[...load(a, i), ...get(q), I64_REM_U, ...set(r)],
      ...load(c, i),
      ...term(0, d0, true),
      ...term(15, d1, true),
      ...term(30, d2, false),
      ...get(q),
      I64_REM_U,
    ]),
  }
})()

/**
 * (a, b, c, m, k, nbytes): c += a·b for a (m×k), b (k×n), nbytes = 8n; all of m, k, n > 0. i-l-j loop order so
 * the innermost loop streams along rows of b and c.
 */
const matmul: Kernel = (() => {
  const [a, b, c, m, k, nb, l, av, p, q, pend, brow] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
  return {
    name: 'matmul',
    params: [I32, I32, I32, I32, I32, I32],
    locals: [I32, I64, I32, I32, I32, I32],
    code: [
      ...[LOOP, VOID, ...get(b), ...set(brow), ...get(k), ...set(l)],
      ...[LOOP, VOID, ...get(a), ...I64_LOAD, ...set(av), ...bump(a, eight)],
      ...[...get(c), ...set(p), ...get(brow), ...set(q), ...get(c), ...get(nb), I32_ADD, ...set(pend)],
      ...[
        LOOP,
        VOID,
        ...get(p),
        ...get(p),
        ...I64_LOAD,
        ...get(av),
        ...get(q),
        ...I64_LOAD,
        I64_MUL,
        I64_ADD,
      ],
      ...[
        ...I64_STORE,
        ...bump(p, eight),
        ...bump(q, eight),
        ...get(p),
        ...get(pend),
        I32_LT_U,
        BR_IF,
        0,
        END,
      ],
      ...[...bump(brow, get(nb)), ...get(l), I32_CONST, 1, I32_SUB, ...tee(l), BR_IF, 0, END],
      ...[...bump(c, get(nb)), ...get(m), I32_CONST, 1, I32_SUB, ...tee(m), BR_IF, 0, END],
    ],
  }
})()

type Bin = (a: number, b: number, out: number, bytes: number) => void
type Sh = (a: number, out: number, bytes: number, s: bigint) => void
interface Kernels {
  add: Bin
  sub: Bin
  mul: Bin
  scale: Sh
  sar: Sh
  nsar: Sh
  shr: Sh
  remu: Sh
  shl: Sh
  xor: Bin
  and: Bin
  matmul: (a: number, b: number, c: number, m: number, k: number, nbytes: number) => void
  muladdmod: (
    a: number,
    c: number,
    out: number,
    bytes: number,
    q: bigint,
    d0: bigint,
    d1: bigint,
    d2: bigint,
  ) => void
}

// The project's TypeScript lib has no DOM/WebAssembly typings; declare the little used here.
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmApi {
  Memory: new (d: { initial: number }) => WasmMemory
  Module: new (bytes: Uint8Array) => object
  Instance: new (m: object, imports: object) => { exports: unknown }
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

const memory = new WA.Memory({ initial: 16 })
const wasm = new WA.Instance(
  new WA.Module(
    assemble([
      binop('add', I64_ADD),
      binop('sub', I64_SUB),
      binop('mul', I64_MUL),
      binop('xor', I64_XOR),
      binop('and', I64_AND),
      shl,
      scale,
      sar,
      nsar,
      shr,
      remu,
      matmul,
      mulAddMod,
    ]),
  ),
  { env: { mem: memory } },
).exports as unknown as Kernels

/** Grows linear memory to hold `bytes` and returns a fresh 64-bit view of it. */
function heap(bytes: number): BigUint64Array {
  const need = Math.ceil(bytes / 65536) - memory.buffer.byteLength / 65536
  if (need > 0) memory.grow(need)
  return new BigUint64Array(memory.buffer)
}

function sameLength(a: Ring, b: Ring): void {
  if (a.length !== b.length) {
    throw new SyndicateError('ERR_RING_SHAPE', `ring vectors differ in length (${a.length} vs ${b.length})`)
  }
}

function binary(fn: Bin, a: Ring, b: Ring): Ring {
  sameLength(a, b)
  const n = a.length
  const h = heap(24 * n)
  h.set(a, 0)
  h.set(b, n)
  fn(0, 8 * n, 16 * n, 8 * n)
  return h.slice(2 * n, 3 * n)
}

function unary(fn: Sh, a: Ring, s: bigint): Ring {
  const n = a.length
  const h = heap(16 * n)
  h.set(a, 0)
  fn(0, 8 * n, 8 * n, s)
  return h.slice(n, 2 * n)
}

/**
 * v + Σ (or −) the terms mod 2^64, in place in WebAssembly memory: one copy in per term and one out, where a
 * chain of ringAdd calls copies v in and out at every step. Terms are read one at a time, so a generator can
 * make each (a PRG mask) only when it is needed. With `out` (same length) the result is written there and
 * returned: e.g. a view into a message buffer, which saves allocating and copying the vector once more.
 */
export function ringAccumulate(v: Ring, terms: Iterable<{ x: Ring; sub?: boolean }>, out?: Ring): Ring {
  const n = v.length
  const h = heap(16 * n)
  h.set(v, 0)
  for (const { x, sub } of terms) {
    sameLength(v, x)
    h.set(x, n)
    ;(sub ? wasm.sub : wasm.add)(0, 8 * n, 0, 8 * n)
  }
  if (!out) return h.slice(0, n)
  sameLength(v, out)
  out.set(h.subarray(0, n))
  return out
}

export const ringAdd = (a: Ring, b: Ring): Ring => binary(wasm.add, a, b)
export const ringSub = (a: Ring, b: Ring): Ring => binary(wasm.sub, a, b)
/** Elementwise (Hadamard) product mod 2^64. */
export const ringMul = (a: Ring, b: Ring): Ring => binary(wasm.mul, a, b)
/** Bitwise XOR and AND: the operations of XOR-shared (boolean) values, 64 bits per element. */
export const ringXor = (a: Ring, b: Ring): Ring => binary(wasm.xor, a, b)
export const ringAnd = (a: Ring, b: Ring): Ring => binary(wasm.and, a, b)
/** Shift left by f bits. */
export const ringShl = (a: Ring, f: number): Ring => unary(wasm.shl, a, BigInt(f))
/** a · s mod 2^64 for a scalar s (any BigInt; reduced mod 2^64). */
export const ringScale = (a: Ring, s: bigint): Ring => unary(wasm.scale, a, BigInt.asIntN(64, s))
export const ringNeg = (a: Ring): Ring => unary(wasm.scale, a, -1n)
/** Arithmetic (sign-preserving) shift right by f bits, reading elements as two's-complement. */
export const ringSar = (a: Ring, f: number): Ring => unary(wasm.sar, a, BigInt(f))
/** Logical shift right by f bits, reading elements as unsigned. */
export const ringShr = (a: Ring, f: number): Ring => unary(wasm.shr, a, BigInt(f))
/** a mod p for every element read as unsigned (p in [1, 2^64)); e.g. reduction to an HE plaintext modulus. */
export function ringRem(a: Ring, p: bigint): Ring {
  if (p <= 0n || p >= 1n << 64n) throw new SyndicateError('ERR_RING_SHAPE', `modulus ${p} out of range`)
  return unary(wasm.remu, a, BigInt.asIntN(64, p))
}
/**
 * (c + (a mod q)·s) mod q elementwise, for c < q < 2^45 and s < q (RNS arithmetic on HE polynomials, whose
 * products would overflow 64 bits).
 */
export function ringMulAddMod(c: Ring, a: Ring, q: bigint, s: bigint): Ring {
  sameLength(a, c)
  if (q <= 0n || q >= 1n << 45n || s < 0n || s >= q) {
    throw new SyndicateError('ERR_RING_SHAPE', `modulus ${q} or factor ${s} out of range`)
  }
  const n = a.length
  const h = heap(24 * n)
  h.set(a, 0)
  h.set(c, n)
  const d = [s, (s << 15n) % q, (s << 30n) % q]
  wasm.muladdmod(0, 8 * n, 16 * n, 8 * n, q, d[0], d[1], d[2])
  return h.slice(2 * n, 3 * n)
}

/** -((-a) >> f): the second party's half of SecureML local truncation. */
export const ringNegSarNeg = (a: Ring, f: number): Ring => unary(wasm.nsar, a, BigInt(f))

/** a (m×k) · b (k×n) mod 2^64. */
export function ringMatmul(a: Ring, b: Ring, m: number, k: number, n: number): Ring {
  if (a.length !== m * k || b.length !== k * n) {
    throw new SyndicateError(
      'ERR_RING_SHAPE',
      `matmul shapes do not match: ${a.length} != ${m}x${k} or ${b.length} != ${k}x${n}`,
    )
  }
  const out = m * n
  if (out === 0) return new BigUint64Array(0)
  const h = heap(8 * (a.length + b.length + out))
  h.set(a, 0)
  h.set(b, a.length)
  const c = a.length + b.length
  h.fill(0n, c, c + out)
  if (k > 0) wasm.matmul(0, 8 * a.length, 8 * c, m, k, 8 * n)
  return h.slice(c, c + out)
}

/** Transpose of a (rows×cols), moving 32-bit halves (no BigInt per element). */
export function ringTranspose(a: Ring, rows: number, cols: number): Ring {
  const out = new BigUint64Array(a.length)
  const src = new Uint32Array(a.buffer, a.byteOffset, 2 * a.length)
  const dst = new Uint32Array(out.buffer)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = 2 * (r * cols + c)
      const to = 2 * (c * rows + r)
      dst[to] = src[from]
      dst[to + 1] = src[from + 1]
    }
  }
  return out
}

/** Ring vector of small signed integers (e.g. public 0/1 bits or ±1 selectors). */
export function ringFromInts(values: ArrayLike<number>): Ring {
  const out = new BigUint64Array(values.length)
  const w = new Uint32Array(out.buffer)
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    w[2 * i] = v >>> 0
    w[2 * i + 1] = v < 0 ? 0xffffffff : 0
  }
  return out
}

/** Bit `bit` (0 = least significant) of every element, as 0/1 numbers. */
export function ringBits(a: Ring, bit: number): Uint8Array {
  const w = new Uint32Array(a.buffer, a.byteOffset, 2 * a.length)
  const out = new Uint8Array(a.length)
  const word = bit < 32 ? 0 : 1
  const shift = bit & 31
  for (let i = 0; i < a.length; i++) out[i] = (w[2 * i + word] >>> shift) & 1
  return out
}

/** A ring vector of `n` copies of `v`. */
export function ringConst(n: number, v: bigint): Ring {
  return new BigUint64Array(n).fill(BigInt.asUintN(64, v))
}

/** The concatenation of `parts`. */
export function ringConcat(...parts: Ring[]): Ring {
  const out = new BigUint64Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
