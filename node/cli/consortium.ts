import { readFileSync, writeFileSync } from 'node:fs'
import type { Command } from 'commander'
import type { z } from 'zod'
import {
  type ConsortiumDocument,
  MemberSchema,
  newGenesis,
  parseConsortiumDocument,
  signDocument,
  verifyDocument,
} from '../../protocol/consortium.ts'
import { loadConfig } from '../config.ts'
import { UsageError } from '../errors.ts'
import { loadIdentity } from '../identity.ts'
import { Membership } from '../membership.ts'
import { openStore } from '../store.ts'
import { apiCall, resolveTarget } from './client.ts'

/**
 * Forming a consortium by hand: each institution prints its member descriptor; one of them creates the genesis
 * document from all descriptors; each signs it in turn; each installs it on its node.
 */
export function registerConsortiumCommands(program: Command): void {
  const c = program
    .command('consortium')
    .description('create, sign and install the signed consortium document')

  c.command('descriptor')
    .description("print this node's member descriptor (name, peer id, roles, addresses) as JSON")
    .requiredOption('--dir <dir>', 'data directory')
    .option(
      '--roles <roles>',
      'comma-separated roles, e.g. bank,label-holder',
      (s) => s.split(','),
      [] as string[],
    )
    .option(
      '--address <multiaddr...>',
      'addresses other members dial (default: announce or fixed-port listen addresses)',
    )
    .action((o: { dir: string; roles: string[]; address?: string[] }) => {
      const cfg = loadConfig(o.dir)
      const { peerId } = loadIdentity(o.dir)
      const addrs =
        o.address ?? (cfg.announce.length ? cfg.announce : cfg.listen.filter((a) => !a.endsWith('/tcp/0')))
      if (addrs.length === 0) {
        throw new UsageError(
          'ERR_USAGE',
          'the node listens on a random port; pass --address /ip4/HOST/tcp/PORT (or set announce in the config)',
        )
      }
      const member = MemberSchema.parse({
        name: cfg.name,
        peerId: peerId.toString(),
        roles: o.roles,
        addresses: addrs,
      })
      process.stdout.write(`${JSON.stringify(member, null, 2)}\n`)
    })

  c.command('create')
    .description('create an unsigned genesis document from member descriptor files')
    .requiredOption('--id <id>', 'consortium id (letters, digits, dot, dash, underscore)')
    .requiredOption('--name <name>', 'human-readable consortium name')
    .requiredOption('--member <file...>', 'member descriptor files (from "consortium descriptor")')
    .option('--threshold <n>', 'signatures needed for later membership changes (default: majority)', (s) =>
      Number(s),
    )
    .requiredOption('--out <file>', 'where to write the document')
    .action((o: { id: string; name: string; member: string[]; threshold?: number; out: string }) => {
      const members = o.member.map((f) => parseJsonFile(f, MemberSchema, 'member descriptor'))
      const doc = newGenesis({ id: o.id, name: o.name, members, threshold: o.threshold })
      writeFileSync(o.out, `${JSON.stringify(doc, null, 2)}\n`, { flag: 'wx' })
      process.stdout.write(
        `wrote ${o.out}: ${members.length} members, threshold ${doc.body.threshold}; every member must now sign it\n`,
      )
    })

  c.command('sign')
    .description("add this node's signature to a consortium document file (in place)")
    .requiredOption('--dir <dir>', 'data directory of the signing node')
    .argument('<file>', 'consortium document')
    .action(async (file: string, o: { dir: string }) => {
      const { privateKey, peerId } = loadIdentity(o.dir)
      const doc = readDocument(file)
      if (!doc.body.members.some((m) => m.peerId === peerId.toString()) && doc.body.version === 1) {
        throw new UsageError(
          'ERR_USAGE',
          `this node (${peerId}) is not a member of the document; only members sign the genesis`,
        )
      }
      const signed = await signDocument(doc, privateKey, peerId)
      writeFileSync(file, `${JSON.stringify(signed, null, 2)}\n`)
      const v = await verifyDocument(signed)
      process.stdout.write(
        v.ok ? `signed; the document is complete\n` : `signed; still unsigned by: ${v.missing.join(', ')}\n`,
      )
    })

  c.command('install')
    .description(
      'install a fully signed document on a node (offline on its data directory, or through its API if it runs)',
    )
    .argument('<file>', 'consortium document')
    .option('--dir <dir>', 'data directory')
    .option('--api <url>', 'base URL of a running node')
    .option('--token <token>', 'API token (default: $SYNDICATE_TOKEN)')
    .action(async (file: string, o: { dir?: string; api?: string; token?: string }) => {
      const doc = readDocument(file)
      if (!o.api && o.dir) {
        const installed = await installOffline(o.dir, doc)
        if (installed) {
          process.stdout.write(
            `installed consortium ${doc.body.id} version ${doc.body.version} in ${o.dir}\n`,
          )
          return
        }
      }
      await apiCall(resolveTarget(o), 'POST', '/v1/consortium', doc)
      process.stdout.write(
        `installed consortium ${doc.body.id} version ${doc.body.version} on the running node\n`,
      )
    })
}

/** Installs into a stopped node's store; returns false when the node is running (its database is locked). */
async function installOffline(dir: string, doc: ConsortiumDocument): Promise<boolean> {
  let store: Awaited<ReturnType<typeof openStore>>
  try {
    store = await openStore(dir)
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_DATA_DIR_LOCKED') return false
    throw e
  }
  try {
    const m = new Membership(store, loadIdentity(dir).peerId)
    await m.load()
    await m.install(doc)
    return true
  } finally {
    await store.close()
  }
}

function readDocument(file: string): ConsortiumDocument {
  return parseConsortiumDocument(readJson(file, 'consortium document'))
}

function parseJsonFile<T extends z.ZodType>(file: string, schema: T, what: string): z.infer<T> {
  const r = schema.safeParse(readJson(file, what))
  if (!r.success) {
    const i = r.error.issues[0]
    throw new UsageError(
      'ERR_USAGE',
      `${what} ${file} is invalid at ${i.path.join('.') || '(root)'}: ${i.message}`,
    )
  }
  return r.data
}

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    throw new UsageError('ERR_USAGE', `cannot read ${what} ${file}: ${(e as Error).message}`)
  }
}
