import { createHash } from 'node:crypto'
import { SyndicateError } from '../crypto/errors.ts'
import { Origin, parseOrigin } from './entry.ts'
import { fromHex, type Member, type Signer, verifySignature } from './keys.ts'
import { HASH_BYTES } from './merkle.ts'

/**
 * Signed checkpoints in the transparency-dev / C2SP format: a checkpoint body
 *
 *     <origin>\n<tree size>\n<base64 root hash>\ntimestamp <unix ms>\n
 *
 * signed as a C2SP signed note by the log owner (key name = origin, Ed25519 key ID algorithm byte 0x01),
 * and cosigned by witnesses with C2SP tlog-cosignature/v1 lines (key name = the witness's own origin in the
 * same consortium, algorithm byte 0x04, signature = u64 timestamp ‖ Ed25519 signature over
 * "cosignature/v1\ntime <seconds>\n" ‖ body). Standard tooling can therefore read and check them.
 */

export const ERR_GOV_CHECKPOINT = 'ERR_GOV_CHECKPOINT'
const SIG_PREFIX = '\u2014 '
const ALG_ED25519 = 0x01
const ALG_COSIGNATURE_V1 = 0x04
/** Notes are small; refuse anything that is not, before parsing it. */
export const MAX_NOTE_BYTES = 64 * 1024
const MAX_SIGNATURE_LINES = 100

export interface Checkpoint {
  origin: string
  size: number
  root: Uint8Array
  /** When the owner signed it, Unix milliseconds. */
  timestamp: number
}

export interface NoteSignature {
  name: string
  keyId: Uint8Array
  signature: Uint8Array
}

/** A checkpoint whose owner signature verified, with the cosignatures that verified. */
export interface VerifiedCheckpoint {
  checkpoint: Checkpoint
  body: string
  /** The full note: body, blank line, owner signature and every verified cosignature line. */
  note: string
  cosigners: Array<{ member: Member; timestamp: number }>
  /** Signature lines that were ignored (unknown key, bad signature), with the reason. */
  ignored: string[]
}

export function formatCheckpoint(cp: Checkpoint): string {
  return `${cp.origin}\n${cp.size}\n${Buffer.from(cp.root).toString('base64')}\ntimestamp ${cp.timestamp}\n`
}

export function parseCheckpointBody(body: string): Checkpoint {
  const bad = (why: string) => new SyndicateError(ERR_GOV_CHECKPOINT, `malformed checkpoint: ${why}`)
  const lines = body.split('\n')
  if (lines.length !== 5 || lines[4] !== '') throw bad('expected origin, size, root and timestamp lines')
  const [origin, sizeText, rootText, tsLine] = lines
  if (!Origin.safeParse(origin).success)
    throw bad(`origin "${origin.slice(0, 80)}" is not <consortium>/<peer id>`)
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw bad(`tree size "${sizeText.slice(0, 20)}" is not a decimal integer`)
  }
  const root = new Uint8Array(Buffer.from(rootText, 'base64'))
  if (root.byteLength !== HASH_BYTES || Buffer.from(root).toString('base64') !== rootText) {
    throw bad('root hash is not 32 bytes of standard base64')
  }
  const ts = /^timestamp (0|[1-9][0-9]{0,15})$/.exec(tsLine)
  if (!ts || !Number.isSafeInteger(Number(ts[1]))) throw bad('missing "timestamp <unix ms>" line')
  return { origin, size: Number(sizeText), root, timestamp: Number(ts[1]) }
}

/** C2SP signed-note key ID: SHA-256(name ‖ "\n" ‖ algorithm byte ‖ public key)[:4]. */
export function keyId(name: string, alg: number, publicKeyHex: string): Uint8Array {
  const h = createHash('sha256')
    .update(`${name}\n`)
    .update(Uint8Array.of(alg))
    .update(fromHex(publicKeyHex))
    .digest()
  return new Uint8Array(h.subarray(0, 4))
}

export function parseNote(note: string): { body: string; signatures: NoteSignature[] } {
  if (note.length > MAX_NOTE_BYTES) throw new SyndicateError(ERR_GOV_CHECKPOINT, 'signed note is too large')
  const split = note.lastIndexOf('\n\n')
  if (split < 0 || !note.endsWith('\n')) {
    throw new SyndicateError(ERR_GOV_CHECKPOINT, 'signed note needs a body, a blank line and signature lines')
  }
  const body = note.slice(0, split + 1)
  const lines = note.slice(split + 2, -1).split('\n')
  if (lines.length > MAX_SIGNATURE_LINES)
    throw new SyndicateError(ERR_GOV_CHECKPOINT, 'too many signature lines')
  const signatures = lines.map((line) => {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(line)
    const raw = m ? Buffer.from(m[2], 'base64') : undefined
    if (!m || !raw || raw.byteLength < 5) {
      throw new SyndicateError(ERR_GOV_CHECKPOINT, `malformed signature line "${line.slice(0, 80)}"`)
    }
    return {
      name: m[1],
      keyId: new Uint8Array(raw.subarray(0, 4)),
      signature: new Uint8Array(raw.subarray(4)),
    }
  })
  return { body, signatures }
}

function signatureLine(name: string, id: Uint8Array, sig: Uint8Array): string {
  return `${SIG_PREFIX}${name} ${Buffer.concat([id, sig]).toString('base64')}\n`
}

/** The owner's signed note for a checkpoint. */
export async function signCheckpoint(cp: Checkpoint, signer: Signer): Promise<string> {
  const { peerId } = parseOrigin(cp.origin)
  if (peerId !== signer.member.peerId) {
    throw new SyndicateError(ERR_GOV_CHECKPOINT, `only the owner of ${cp.origin} signs its checkpoints`)
  }
  const body = formatCheckpoint(cp)
  const sig = await signer.sign(new TextEncoder().encode(body))
  return `${body}\n${signatureLine(cp.origin, keyId(cp.origin, ALG_ED25519, signer.member.publicKey), sig)}`
}

function cosignedMessage(body: string, seconds: number): Uint8Array {
  return new TextEncoder().encode(`cosignature/v1\ntime ${seconds}\n${body}`)
}

/** The cosigner's name in a note: its own log origin in the consortium of the log it witnesses. */
export function cosignerName(logOrigin: string, cosigner: Member): string {
  return `${parseOrigin(logOrigin).consortiumId}/${cosigner.peerId}`
}

/** A tlog-cosignature/v1 line by `signer` over a checkpoint body, at `seconds` (Unix seconds). */
export async function cosignLine(body: string, signer: Signer, seconds: number): Promise<string> {
  const cp = parseCheckpointBody(body)
  const name = cosignerName(cp.origin, signer.member)
  const sig = await signer.sign(cosignedMessage(body, seconds))
  const ts = Buffer.alloc(8)
  ts.writeBigUInt64BE(BigInt(seconds))
  return signatureLine(
    name,
    keyId(name, ALG_COSIGNATURE_V1, signer.member.publicKey),
    Buffer.concat([ts, sig]),
  )
}

/**
 * Opens a signed checkpoint: the owner (the member whose peer id is in the origin) must have signed it;
 * cosignature lines by other members are verified and kept, anything else is ignored and reported.
 */
export function verifyCheckpointNote(note: string, members: ReadonlyMap<string, Member>): VerifiedCheckpoint {
  const { body, signatures } = parseNote(note)
  const checkpoint = parseCheckpointBody(body)
  const ownerPeer = parseOrigin(checkpoint.origin).peerId
  const owner = members.get(ownerPeer)
  if (!owner) {
    throw new SyndicateError(
      ERR_GOV_CHECKPOINT,
      `checkpoint of ${checkpoint.origin}: its owner is not a member`,
    )
  }
  const bodyBytes = new TextEncoder().encode(body)
  const ownerId = keyId(checkpoint.origin, ALG_ED25519, owner.publicKey)
  const ownerSig = signatures.find(
    (s) =>
      s.name === checkpoint.origin && Buffer.compare(s.keyId, ownerId) === 0 && s.signature.byteLength === 64,
  )
  if (!ownerSig || !verifySignature(owner.publicKey, bodyBytes, ownerSig.signature)) {
    throw new SyndicateError(
      ERR_GOV_CHECKPOINT,
      `checkpoint of ${checkpoint.origin} at size ${checkpoint.size} has no valid signature by its owner`,
    )
  }
  const consortium = parseOrigin(checkpoint.origin).consortiumId
  const cosigners: VerifiedCheckpoint['cosigners'] = []
  const ignored: string[] = []
  const lines = [signatureLine(ownerSig.name, ownerSig.keyId, ownerSig.signature)]
  for (const s of signatures) {
    if (s === ownerSig) continue
    const slash = s.name.indexOf('/')
    const member =
      slash > 0 && s.name.slice(0, slash) === consortium ? members.get(s.name.slice(slash + 1)) : undefined
    if (!member || member.peerId === ownerPeer) {
      ignored.push(`${s.name}: not a cosigner of this consortium`)
      continue
    }
    if (cosigners.some((c) => c.member.peerId === member.peerId)) continue
    const expectId = keyId(s.name, ALG_COSIGNATURE_V1, member.publicKey)
    if (Buffer.compare(s.keyId, expectId) !== 0 || s.signature.byteLength !== 72) {
      ignored.push(`${s.name}: key id or length does not match a cosignature/v1 by ${member.name}`)
      continue
    }
    const seconds = Number(Buffer.from(s.signature.subarray(0, 8)).readBigUInt64BE())
    if (!verifySignature(member.publicKey, cosignedMessage(body, seconds), s.signature.subarray(8))) {
      ignored.push(`${s.name}: cosignature does not verify`)
      continue
    }
    cosigners.push({ member, timestamp: seconds })
    lines.push(signatureLine(s.name, s.keyId, s.signature))
  }
  return { checkpoint, body, note: `${body}\n${lines.join('')}`, cosigners, ignored }
}

/** Adds signature lines to a note (deduplicated); callers re-verify with verifyCheckpointNote. */
export function addSignatureLines(note: string, lines: readonly string[]): string {
  const existing = new Set(note.slice(note.lastIndexOf('\n\n') + 2).split('\n'))
  const extra = lines.map((l) => l.replace(/\n$/, '')).filter((l) => l !== '' && !existing.has(l))
  return extra.length === 0 ? note : `${note}${extra.map((l) => `${l}\n`).join('')}`
}

export function memberDirectory(members: readonly Member[]): Map<string, Member> {
  return new Map(members.map((m) => [m.peerId, m]))
}
