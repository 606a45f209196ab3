import { createHash } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { isSyndicateError } from '../../../crypto/errors.ts'
import { exportOnnx } from '../../../learning/onnx/export.ts'
import { batchValue, encodeModel, FLOAT, floatTensor, node } from '../../../learning/onnx/graph.ts'
import { createRng, randomLr } from '../../learning/onnx/fixtures.ts'
import { tempRegistry } from './helpers.ts'

const features = ['a', 'b', 'c']
let cleanup: (() => Promise<void>) | undefined
afterEach(async () => {
  await cleanup?.()
  cleanup = undefined
})

async function setup() {
  const t = await tempRegistry()
  cleanup = t.cleanup
  return t
}

async function expectCode(p: Promise<unknown>, code: string) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(isSyndicateError(e, code), `expected ${code}, got ${String(e)}`).toBe(true)
}

/** An ONNX classifier as other tools write it: input "X" [N, 3], output "probabilities" [N, 2] (softmax). */
function externalClassifier(): Uint8Array {
  return encodeModel({
    name: 'external',
    nodes: [
      node('Gemm', ['X', 'W', 'B'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], { axis: 1 }),
    ],
    initializers: [floatTensor('W', [3, 2], [1, -1, 0.5, 0.5, -2, 2]), floatTensor('B', [2], [0, 0.1])],
    inputs: [batchValue('X', FLOAT, [3])],
    outputs: [batchValue('probabilities', FLOAT, [2])],
    metadata: {},
    docString: '',
  })
}

describe('ModelRegistry', () => {
  it('registers fitted model data as a staged version with lineage and the exported ONNX bytes', async () => {
    const { registry } = await setup()
    const model = randomLr(features, createRng(1))
    const lineage = { trainingJobId: 'job-1', datasetSchemaHashes: ['ab12'], metrics: { auc: 0.73 } }
    const v = await registry.register({ id: 'lr', model, lineage, cutoff: 0.3 })
    expect(v).toMatchObject({ version: 1, state: 'staged', kind: 'lr', features, cutoff: 0.3, lineage })
    expect(v.signature).toEqual({ input: 'input', output: 'probability', column: 0, width: 1 })
    const bytes = await registry.onnx('lr', 1)
    expect(Buffer.from(bytes).equals(Buffer.from(exportOnnx(model)))).toBe(true)
    expect(v.sha256).toBe(createHash('sha256').update(bytes).digest('hex'))
    expect((await registry.list()).map((r) => r.id)).toEqual(['lr'])
  })

  it('moves versions through legal states only; going live retires the previous live version', async () => {
    const { registry } = await setup()
    const model = randomLr(features, createRng(2))
    await registry.register({ id: 'm', model })
    await registry.register({ id: 'm', model })
    await expectCode(registry.setState('m', 1, 'staged'), 'ERR_MODEL_STATE_TRANSITION')
    await registry.setState('m', 1, 'live')
    expect((await registry.live('m'))?.version).toBe(1)
    await registry.setState('m', 2, 'live')
    expect((await registry.version('m', 1)).state).toBe('retired')
    expect((await registry.live('m'))?.version).toBe(2)
    await expectCode(registry.setState('m', 1, 'live'), 'ERR_MODEL_STATE_TRANSITION')
    // Rollback: re-stage the retired version, then make it live.
    await registry.setState('m', 1, 'staged')
    await registry.setState('m', 1, 'live')
    const r = await registry.get('m')
    expect(r.versions.map((v) => v.state)).toEqual(['live', 'retired'])
    expect(r.versions[0].history.map((h) => h.state)).toEqual(['staged', 'live', 'retired', 'staged', 'live'])
    await expectCode(registry.setState('m', 9, 'live'), 'ERR_MODEL_VERSION_NOT_FOUND')
    await expectCode(registry.get('nope'), 'ERR_MODEL_NOT_FOUND')
  })

  it('keeps records, states and bytes across a reopen of the database', async () => {
    const t = await setup()
    await t.registry.register({ id: 'm', model: randomLr(features, createRng(3)) })
    await t.registry.setState('m', 1, 'live')
    const before = await t.registry.onnx('m', 1)
    const again = await t.reopen()
    expect((await again.live('m'))?.version).toBe(1)
    expect(Buffer.from(await again.onnx('m', 1)).equals(Buffer.from(before))).toBe(true)
  })

  it('imports ONNX trained elsewhere and finds its class-1 probability column', async () => {
    const { registry } = await setup()
    const v = await registry.register({ id: 'ext', onnx: externalClassifier(), features })
    expect(v.kind).toBe('imported')
    expect(v.signature).toEqual({ input: 'X', output: 'probabilities', column: 1, width: 2 })
  })

  it('rejects imports whose graph does not match the declared schema, and bad ids or bytes', async () => {
    const { registry } = await setup()
    await expectCode(
      registry.register({ id: 'x', onnx: externalClassifier(), features: ['a', 'b'] }),
      'ERR_MODEL_SCHEMA_MISMATCH',
    )
    await expectCode(
      registry.register({ id: 'x', onnx: externalClassifier(), features: ['a', 'a', 'b'] }),
      'ERR_MODEL_SCHEMA_INVALID',
    )
    await expectCode(
      registry.register({ id: 'x', onnx: new Uint8Array([1, 2, 3, 4]), features }),
      'ERR_MODEL_ONNX_INVALID',
    )
    await expectCode(
      registry.register({ id: '../x', onnx: externalClassifier(), features }),
      'ERR_MODEL_ID_INVALID',
    )
    await expectCode(registry.register({ id: 'x', onnx: externalClassifier() }), 'ERR_MODEL_SCHEMA_INVALID')
    await expectCode(
      registry.register({ id: 'x', model: randomLr(features, createRng(4)), cutoff: 2 }),
      'ERR_MODEL_CUTOFF',
    )
    await expectCode(
      registry.register({ id: 'x', model: randomLr(features, createRng(4)), referenceRow: [0, 1] }),
      'ERR_MODEL_SCHEMA_INVALID',
    )
    expect(await registry.list()).toEqual([])
  })

  it('serialises concurrent registrations into consecutive versions', async () => {
    const { registry } = await setup()
    const model = randomLr(features, createRng(5))
    const vs = await Promise.all([1, 2, 3, 4].map(() => registry.register({ id: 'c', model })))
    expect(vs.map((v) => v.version).sort()).toEqual([1, 2, 3, 4])
    expect((await registry.get('c')).versions).toHaveLength(4)
  })
})
