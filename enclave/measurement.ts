/**
 * The enclave's measurement: a hash of its code bundle and of its measured configuration. A real TEE measures
 * the pages it loads (SGX MRENCLAVE) or the image it boots (TDX MRTD/RTMRs); the simulated platform hashes the
 * source folders the enclave runtime can load. Every member runs the same software, so each verifier computes
 * the measurement it expects from its own installation, like a reproducible build.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { canonicalBytes } from '../crypto/canonical.ts'

/** What the runtime's behaviour depends on beyond its code; part of the measurement. */
export const EnclaveConfigSchema = z.strictObject({
  v: z.literal(1),
  /** Largest upload the enclave accepts from one data owner, in bytes. */
  maxUploadBytes: z
    .number()
    .int()
    .min(1024)
    .max(2 ** 31),
  /** Jobs it holds data for at once. */
  maxJobs: z.number().int().min(1).max(64),
  /** Heap inspection for tests: a different measurement, so a production policy never admits it. */
  diagnostics: z.boolean(),
})
export type EnclaveConfig = z.infer<typeof EnclaveConfigSchema>

export const DEFAULT_ENCLAVE_CONFIG: EnclaveConfig = {
  v: 1,
  maxUploadBytes: 512 * 1024 * 1024,
  maxJobs: 8,
  diagnostics: false,
}

/** The folders the enclave runtime loads code from (it imports enclave/, learning/ and crypto/ only). */
const BUNDLE_DIRS = ['enclave', 'learning', 'crypto']
const ROOT = fileURLToPath(new URL('..', import.meta.url))

function sourceFiles(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...sourceFiles(p))
    else if (/\.(ts|js|mjs|wasm)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p)
  }
  return out
}

let cached: string | undefined

/** Hash over (path, content hash) of every file of the bundle, in path order. */
export function bundleDigest(root = ROOT): string {
  if (root === ROOT && cached) return cached
  const files = BUNDLE_DIRS.flatMap((d) => sourceFiles(join(root, d)))
    .map((f) => relative(root, f).split(sep).join('/'))
    .sort()
  const h = createHash('sha256')
  for (const f of files) {
    h.update(`${f}\n`)
    h.update(
      createHash('sha256')
        .update(readFileSync(join(root, f)))
        .digest(),
    )
  }
  const digest = h.digest('hex')
  if (root === ROOT) cached = digest
  return digest
}

export function measure(config: EnclaveConfig, bundle = bundleDigest()): string {
  const body = canonicalBytes({ domain: 'syndicate/enclave/measurement/v1', bundle, config })
  return bytesToHex(sha256(body))
}
