#!/usr/bin/env node
// The CLI entry: the node's commands plus the simulator's. From a checkout it runs the TypeScript sources
// with Node's type stripping (Node >= 22.18), so a stale dist/ never shadows them; a package without the
// sources runs its build (npm run build writes dist/).
import { existsSync } from 'node:fs'

const sources = existsSync(new URL('../node/cli/main.ts', import.meta.url))
const load = (path) => import(new URL(sources ? `../${path}.ts` : `../dist/${path}.js`, import.meta.url).href)
const { main } = await load('node/cli/main')
const { registerSimCommands } = await load('sim/cli')
await main(process.argv, [registerSimCommands])
