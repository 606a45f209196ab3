import type { Command } from 'commander'
import type { DatasetRecord } from '../services/datasets/registry.ts'
import { apiCall, apiOptions, resolveTarget } from './client.ts'

export function registerDatasetCommands(program: Command): void {
  const ds = program.command('datasets').description('register local datasets (the data stays in its file)')
  apiOptions(
    ds
      .command('add')
      .description('register a CSV file: its schema, hash and statistics are stored by the node')
      .argument('<file>')
      .requiredOption('--id <column>', 'the id column (customer key used for alignment)')
      .option('--label <column>', 'the label column, if this institution holds the label')
      .option('--name <name>', 'dataset name (default: the file name without extension)')
      .option('--delimiter <char>', 'field delimiter (default: detected ,)'),
  ).action(async (file: string, o) => {
    const name =
      o.name ??
      file
        .split('/')
        .pop()!
        .replace(/\.[^.]*$/, '')
        .replace(/[^A-Za-z0-9._-]/g, '-')
    const rec = await apiCall<DatasetRecord>(resolveTarget(o), 'POST', '/v1/datasets', {
      name,
      file,
      id: o.id,
      ...(o.label ? { label: o.label } : {}),
      ...(o.delimiter ? { delimiter: o.delimiter } : {}),
    })
    process.stdout.write(
      `registered ${rec.name}: ${rec.rows} rows, ${rec.schema.columns.length} columns, schema hash ${rec.schemaHash}\n`,
    )
  })
  apiOptions(ds.command('list').description('registered datasets')).action(async (o) => {
    const { datasets } = await apiCall<{ datasets: DatasetRecord[] }>(resolveTarget(o), 'GET', '/v1/datasets')
    if (datasets.length === 0) process.stdout.write('no datasets\n')
    for (const d of datasets)
      process.stdout.write(
        `${d.name.padEnd(24)} ${String(d.rows).padStart(8)} rows  ${d.schemaHash}  ${d.file}\n`,
      )
  })
}
