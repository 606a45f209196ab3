import type { Command } from 'commander'
import { UsageError } from '../errors.ts'
import { scoreCommand } from '../services/models/cli.ts'
import { apiOptions, resolveTarget } from './client.ts'

/** `syndicate score`: score rows with a deployed model through the node's API. */
export function registerModelCommands(program: Command): void {
  apiOptions(
    program
      .command('score')
      .description(
        'score one row (--row) or a CSV file (--file) with a live model: probability, decision, reason codes',
      )
      .requiredOption('--model <id>', 'model id')
      .option('--file <csv>', 'CSV with a header; other columns than the features are ignored')
      .option('--row <json>', 'one row as a JSON object of feature values')
      .option('--out <path>', 'output CSV (default: standard output)')
      .option('--id-column <name>', 'column copied to the output to identify rows')
      .option('--batch-size <n>', 'rows per request', (s) => Number(s))
      .option('--reasons <n>', 'reason codes per row', (s) => Number(s)),
  ).action(async (o) => {
    if ((o.file === undefined) === (o.row === undefined))
      throw new UsageError('ERR_USAGE', 'give exactly one of --file and --row')
    const target = resolveTarget(o)
    if (!target.token) throw new UsageError('ERR_USAGE', 'scoring needs a token: --token or SYNDICATE_TOKEN')
    const n = await scoreCommand(
      {
        model: o.model,
        file: o.file,
        row: o.row,
        out: o.out,
        idColumn: o.idColumn,
        batchSize: o.batchSize,
        reasons: o.reasons,
      },
      { baseUrl: target.url, token: target.token },
    )
    if (o.out) process.stderr.write(`scored ${n} rows into ${o.out}\n`)
  })
}
