import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The bundled credit data (UCI default of credit card clients in FATE's splits), found next to the checkout
 * at ../shared/data, or wherever SYNDICATE_DATA points.
 */
const MARKER = 'default_credit_hetero_guest.csv'

/** The first shared/data next to a folder above this module (the checkout's, from sources or from dist/). */
function findDataDir(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(dir, 'shared/data')
    if (existsSync(join(candidate, MARKER))) return candidate
    if (dirname(dir) === dir) return undefined
    dir = dirname(dir)
  }
}

export function bundledDataDir(): string {
  const dir = process.env.SYNDICATE_DATA ?? findDataDir()
  if (!dir || !existsSync(join(dir, MARKER))) {
    throw new Error(
      `the bundled credit data is not ${dir ? `at ${dir}` : 'in a shared/data folder next to the checkout'}; set SYNDICATE_DATA to the folder holding default_credit_*.csv`,
    )
  }
  return dir
}

/** Three institutions on the vertical split: the label holder keeps the guest file; the host file's ten
 * features are divided between two partners. */
export const VERTICAL_PLAN = {
  labelHolder: { name: 'bank-a', file: 'default_credit_hetero_guest.csv', label: 'y' },
  partners: [
    { name: 'lender-b', file: 'default_credit_hetero_host.csv', columns: ['x0', 'x1', 'x2', 'x3', 'x4'] },
    { name: 'insurer-c', file: 'default_credit_hetero_host.csv', columns: ['x5', 'x6', 'x7', 'x8', 'x9'] },
  ],
} as const

/** Three institutions on the horizontal split, and the held-out customers the aggregator evaluates on. */
export const HORIZONTAL_PLAN = {
  parties: [
    { name: 'bank-a', file: 'default_credit_homo_guest.csv' },
    { name: 'lender-b', file: 'default_credit_homo_host_1.csv' },
    { name: 'insurer-c', file: 'default_credit_homo_host_2.csv' },
  ],
  evaluation: 'default_credit_homo_test.csv',
} as const
