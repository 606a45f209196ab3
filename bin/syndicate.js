#!/usr/bin/env node
// The CLI entry: the node's commands plus the simulator's. From a checkout it runs the TypeScript sources
// with Node's type stripping (Node >= 22.18); a built package (npm run build) runs dist/.
import { existsSync } from 'node:fs'

const built = existsSync(new URL('../dist/node/cli/main.js', import.meta.url))
const load = (path) => import(new URL(built ? `../dist/${path}.js` : `../${path}.ts`, import.meta.url).href)
const { main } = await load('node/cli/main')
const { registerSimCommands } = await load('sim/cli')
await main(process.argv, [registerSimCommands])
