/**
 * `npm run bench -- NAME [--flags]`: runs bench/NAME.ts, whose default export takes the remaining argv.
 * `npm run bench` alone lists the benchmarks.
 */
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && f !== 'report.ts')
  .map((f) => f.slice(0, -3))
  .sort()

const [name, ...rest] = process.argv.slice(2)
if (!name || name === '--help' || !available.includes(name)) {
  if (name && name !== '--help') process.stderr.write(`unknown benchmark "${name}"\n`)
  process.stderr.write(`usage: npm run bench -- NAME [--flags]\nbenchmarks: ${available.join(', ')}\n`)
  process.exit(name && name !== '--help' ? 2 : 0)
}
const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as {
  default: (argv: string[]) => Promise<void>
}
await mod.default(rest)
// Benchmarks may leave libp2p or worker handles behind on failure paths; a finished run must end.
process.exit(0)
