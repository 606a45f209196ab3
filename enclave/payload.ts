/**
 * What a data owner uploads into the enclave: its rows (ids, the released feature columns, the label if it
 * holds it) in a compact binary table, encrypted in chunks under a fresh data key. Each chunk's associated
 * data names the job, the owner, its index and the chunk count, so chunks cannot be reordered, dropped,
 * swapped between owners or replayed into another job without failing authentication.
 */
import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { AEAD_KEY_BYTES, AEAD_OVERHEAD, aeadOpen, aeadSeal } from '../crypto/aead.ts'
import { SyndicateError } from '../crypto/errors.ts'
import type { Dataset } from '../learning/data/dataset.ts'

export const CHUNK_BYTES = 1024 * 1024

const HeaderSchema = z.strictObject({
  v: z.literal(1),
  idColumn: z.string().max(128),
  label: z.string().max(128).optional(),
  columns: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(128),
        type: z.enum(['numeric', 'categorical']),
        nullable: z.boolean(),
      }),
    )
    .max(4096),
  categories: z.record(z.string(), z.array(z.string().max(256)).max(65536)),
  // Checked by hand below: a schema walk over 30,000 ids costs more than decrypting them.
  ids: z.array(z.unknown()),
})

/** The table as bytes: u32 header length ‖ JSON header (schema, ids) ‖ float64 features ‖ u8 labels. */
export function encodeTable(ds: Dataset): Uint8Array {
  const header = new TextEncoder().encode(
    JSON.stringify({
      v: 1,
      idColumn: ds.schema.id,
      ...(ds.y ? { label: ds.schema.label ?? 'y' } : {}),
      columns: ds.schema.columns,
      categories: ds.categories,
      ids: ds.ids,
    }),
  )
  const n = ds.ids.length
  const out = new Uint8Array(4 + header.length + ds.X.byteLength + (ds.y ? n : 0))
  new DataView(out.buffer).setUint32(0, header.length)
  out.set(header, 4)
  out.set(new Uint8Array(ds.X.buffer, ds.X.byteOffset, ds.X.byteLength), 4 + header.length)
  if (ds.y) out.set(ds.y, 4 + header.length + ds.X.byteLength)
  return out
}

export function decodeTable(bytes: Uint8Array, owner: string): Dataset {
  const bad = (why: string) =>
    new SyndicateError('ERR_ENCLAVE_UPLOAD', `the rows uploaded by ${owner} are malformed: ${why}`)
  if (bytes.length < 4) throw bad('too short')
  const hl = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0)
  if (4 + hl > bytes.length) throw bad('header length out of range')
  let header: z.infer<typeof HeaderSchema>
  try {
    header = HeaderSchema.parse(JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + hl))))
  } catch (e) {
    throw bad(`header: ${(e as Error).message.slice(0, 200)}`)
  }
  const ids = header.ids
  for (const id of ids)
    if (typeof id !== 'string' || id.length === 0 || id.length > 128)
      throw bad('ids must be 1-128 characters')
  const n = ids.length
  const d = header.columns.length
  const xBytes = n * d * 8
  const expected = 4 + hl + xBytes + (header.label ? n : 0)
  if (bytes.length !== expected)
    throw bad(`${bytes.length} bytes where ${n} rows × ${d} columns need ${expected}`)
  // Copied into fresh, aligned arrays: the decrypted buffer is wiped by the caller.
  const X = new Float64Array(n * d)
  new Uint8Array(X.buffer).set(bytes.subarray(4 + hl, 4 + hl + xBytes))
  const y = header.label ? Uint8Array.from(bytes.subarray(4 + hl + xBytes)) : undefined
  if (y?.some((v) => v > 1)) throw bad('labels must be 0 or 1')
  return {
    schema: { id: header.idColumn, label: header.label, columns: header.columns },
    ids: ids as string[],
    y,
    X,
    featureNames: header.columns.map((c) => c.name),
    categories: header.categories,
  }
}

export function newDataKey(): Uint8Array {
  return new Uint8Array(randomBytes(AEAD_KEY_BYTES))
}

function chunkAad(job: string, owner: string, index: number, count: number): Uint8Array {
  return new TextEncoder().encode(`syndicate/enclave/upload/v1\n${job}\n${owner}\n${index}/${count}`)
}

/** Splits `plain` into encrypted chunks of at most CHUNK_BYTES of plaintext each. */
export function encryptChunks(key: Uint8Array, plain: Uint8Array, job: string, owner: string): Uint8Array[] {
  const count = Math.max(1, Math.ceil(plain.length / CHUNK_BYTES))
  return Array.from({ length: count }, (_, i) =>
    aeadSeal(key, plain.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES), chunkAad(job, owner, i, count)),
  )
}

export const MAX_CHUNK_BOX = CHUNK_BYTES + AEAD_OVERHEAD

/** Decrypts and joins the chunks; names the first chunk that fails authentication. */
export function decryptChunks(key: Uint8Array, chunks: Uint8Array[], job: string, owner: string): Uint8Array {
  const parts = chunks.map((c, i) => {
    const p = aeadOpen(key, c, chunkAad(job, owner, i, chunks.length))
    if (!p)
      throw new SyndicateError(
        'ERR_ENCLAVE_TAMPERED',
        `chunk ${i + 1} of ${chunks.length} uploaded by ${owner} fails authentication: it was altered, reordered or is not from this job`,
        { owner, chunk: i },
      )
    return p
  })
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
    p.fill(0)
  }
  return out
}
