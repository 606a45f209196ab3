import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

/**
 * The import rule of docs/architecture.md: imports point down only. A layer may import itself, the layers
 * listed for it, and libraries; never a layer above it.
 */
const ALLOWED: Record<string, string[]> = {
  crypto: [],
  governance: ['crypto'],
  learning: ['crypto'],
  protocol: ['crypto', 'governance'],
  enclave: ['crypto', 'learning'],
  node: ['protocol', 'crypto', 'learning', 'enclave', 'governance'],
  sim: ['node', 'protocol', 'crypto', 'learning', 'enclave', 'governance'],
}

const root = resolve(import.meta.dirname, '..')

function sources(dir: string): string[] {
  let out: string[] = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out = out.concat(sources(p))
    else if (name.endsWith('.ts')) out.push(p)
  }
  return out
}

describe('architecture', () => {
  it('every import points down the layer stack', () => {
    const violations: string[] = []
    for (const layer of Object.keys(ALLOWED)) {
      let files: string[] = []
      try {
        files = sources(join(root, layer))
      } catch {
        continue
      }
      for (const file of files) {
        const text = readFileSync(file, 'utf8')
        for (const m of text.matchAll(
          /(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g,
        )) {
          const spec = m[1] ?? m[2]
          if (!spec.startsWith('.')) continue
          const target = relative(root, resolve(file, '..', spec)).split('/')[0]
          if (target === layer || !(target in ALLOWED)) continue
          if (!ALLOWED[layer].includes(target))
            violations.push(`${relative(root, file)} imports ${spec} (${layer} → ${target})`)
        }
      }
    }
    expect(violations).toEqual([])
  })
})
