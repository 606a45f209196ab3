#!/usr/bin/env node
// The CLI entry. From a checkout it runs the TypeScript sources with Node's type stripping (Node >= 22.18);
// a built package (npm run build) runs dist/.
import { existsSync } from 'node:fs'

const built = new URL('../dist/node/cli/main.js', import.meta.url)
const { main } = await import(existsSync(built) ? built.href : new URL('../node/cli/main.ts', import.meta.url).href)
await main(process.argv)
