import { readFile } from 'node:fs/promises'
import SEAL, { type MainModule } from 'node-seal'
import { SyndicateError } from '../errors.ts'

/**
 * Loads the node-seal WebAssembly runtime once per process. We instantiate the module ourselves (Emscripten's
 * `instantiateWasm` hook) only to keep a handle on its linear memory: node-seal 7 does not export the heap, and
 * the memory size is how tests and monitoring prove that the wrapper frees every SEAL object it creates.
 */
export interface SealRuntime {
  readonly seal: MainModule
  /** Current size of the WebAssembly linear memory in bytes (it only ever grows; reuse keeps it flat). */
  heapBytes(): number
}

let loading: Promise<SealRuntime> | undefined

// The project's TypeScript lib has no DOM/WebAssembly typings; this is the slice we use.
interface WasmMemory {
  readonly buffer: ArrayBuffer
}
interface WasmApi {
  Memory: abstract new (...args: never[]) => WasmMemory
  instantiate(
    bytes: Uint8Array,
    imports: unknown,
  ): Promise<{ instance: { exports: Record<string, unknown> }; module: unknown }>
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

export function loadSeal(): Promise<SealRuntime> {
  loading ??= instantiate().catch((e: unknown) => {
    loading = undefined // let a later call retry
    throw e
  })
  return loading
}

async function instantiate(): Promise<SealRuntime> {
  let memory: WasmMemory | undefined
  const bytes = await readFile(new URL('seal_throws.wasm', import.meta.resolve('node-seal')))
  // Emscripten waits for `done` forever; a failed instantiation must reject instead of hanging.
  let fail: (e: unknown) => void = () => {}
  const failed = new Promise<never>((_, reject) => {
    fail = reject
  })
  const seal = await Promise.race([
    SEAL({
      instantiateWasm(imports: unknown, done: (instance: unknown, module: unknown) => void) {
        Wasm.instantiate(bytes, imports).then(({ instance, module }) => {
          memory = Object.values(instance.exports).find((v): v is WasmMemory => v instanceof Wasm.Memory)
          done(instance, module)
        }, fail)
        return {}
      },
    }),
    failed,
  ])
  if (!memory) {
    throw new SyndicateError('ERR_HE_RUNTIME', 'node-seal loaded without an exported WebAssembly memory', {})
  }
  const mem = memory
  return { seal, heapBytes: () => mem.buffer.byteLength }
}

/**
 * SEAL's C++ exceptions reach JavaScript as `WebAssembly.Exception` whose `message` is `[type, what]`.
 * Returns the `what` text (or the plain message) so callers can wrap it in a SyndicateError.
 */
export function sealMessage(e: unknown): string {
  const m = (e as { message?: unknown } | null)?.message
  if (Array.isArray(m)) return m.map(String).join(': ')
  if (typeof m === 'string') return m
  return String(e)
}
