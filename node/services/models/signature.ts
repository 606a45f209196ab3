/**
 * What the scorer needs to know about an ONNX graph, read from onnxruntime itself (the authority on what it
 * will run): the float input [N, F] and the output holding P(y = 1). Used to validate imported models.
 */
import * as ort from 'onnxruntime-node'
import { SyndicateError } from '../../../crypto/errors.ts'

export interface OnnxSignature {
  input: string
  /** The output tensor holding the probability of class 1 and its column: [N] / [N, 1] → 0, [N, 2] → 1. */
  output: string
  column: number
  width: number
}

export const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
}

export async function createSession(onnx: Uint8Array): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(onnx, SESSION_OPTIONS)
  } catch (e) {
    throw new SyndicateError(
      'ERR_MODEL_ONNX_INVALID',
      `onnxruntime cannot load this model (${(e as Error).message.split('\n')[0]}); check that the file is an ONNX model with standard or ai.onnx.ml operators.`,
      undefined,
      { cause: e },
    )
  }
}

function mismatch(message: string): never {
  throw new SyndicateError('ERR_MODEL_SCHEMA_MISMATCH', message)
}

/**
 * Checks that the model takes exactly one float32 tensor [N, featureCount] and yields a probability of class 1
 * (an output named `probability`, else the first float32 output of width 1 or 2), by a trial run on two
 * zero rows.
 */
export async function inspectOnnx(onnx: Uint8Array, featureCount: number): Promise<OnnxSignature> {
  const session = await createSession(onnx)
  try {
    const inputs = session.inputMetadata
    if (inputs.length !== 1)
      mismatch(
        `the model has ${inputs.length} inputs; a scoring model takes exactly one [N, features] float tensor`,
      )
    const inp = inputs[0]
    if (!inp.isTensor || inp.type !== 'float32') mismatch(`input "${inp.name}" must be a float32 tensor`)
    const dims = inp.shape
    if (dims.length !== 2 || dims[1] !== featureCount) {
      mismatch(
        `input "${inp.name}" has shape [${dims.join(', ')}] but ${featureCount} features were declared; declare the features in the graph's column order`,
      )
    }
    const floats = session.outputMetadata.filter((o) => o.isTensor && o.type === 'float32')
    const named = floats.find((o) => o.name === 'probability') ?? floats.find((o) => /prob/i.test(o.name))
    const candidates = named ? [named] : floats
    const out = await session.run({
      [inp.name]: new ort.Tensor('float32', new Float32Array(2 * featureCount), [2, featureCount]),
    })
    for (const c of candidates) {
      const t = out[c.name]
      const width = t.dims.length === 1 ? 1 : t.dims.length === 2 ? t.dims[1] : 0
      if (t.dims[0] === 2 && (width === 1 || width === 2))
        return { input: inp.name, output: c.name, column: width - 1, width }
    }
    return mismatch(
      'no float32 output of shape [N], [N, 1] or [N, 2] holds class probabilities (scikit-learn models: convert with zipmap=False)',
    )
  } finally {
    await session.release()
  }
}
