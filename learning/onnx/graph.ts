/**
 * Thin builders over onnx-proto's generated protobuf classes, so the exporter reads as a list of graph nodes.
 * Only what the exporter needs: float/int64 tensors, the attribute kinds used by the operators we emit.
 */
import onnxProto, { type onnx as Onnx } from 'onnx-proto'

const { onnx } = onnxProto
type AttributeValue = number | string | number[] | string[] | { floats: number[] }

export const FLOAT = onnx.TensorProto.DataType.FLOAT
export const INT64 = onnx.TensorProto.DataType.INT64
const ATTR = onnx.AttributeProto.AttributeType
const utf8 = new TextEncoder()

/**
 * One node attribute. Plain numbers are INT when integral, FLOAT otherwise; pass `{ floats }` for a float list
 * whose values may happen to be integral (a list of numbers is taken as INTS).
 */
function attribute(name: string, v: AttributeValue): Onnx.IAttributeProto {
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: utf8.encode(v) }
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: ATTR.INT, i: v } : { name, type: ATTR.FLOAT, f: v }
  }
  if (!Array.isArray(v)) return { name, type: ATTR.FLOATS, floats: v.floats }
  if (v.length > 0 && typeof v[0] === 'string') {
    return { name, type: ATTR.STRINGS, strings: (v as string[]).map((s) => utf8.encode(s)) }
  }
  return { name, type: ATTR.INTS, ints: v as number[] }
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttributeValue> = {},
  domain = '',
): Onnx.INodeProto {
  return {
    opType,
    input: inputs,
    output: outputs,
    name: `${opType}_${outputs[0]}`,
    domain,
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  }
}

export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): Onnx.ITensorProto {
  return { name, dims, dataType: FLOAT, floatData: Array.from(values) }
}

/** A tensor value with a symbolic batch dimension `N` followed by fixed dimensions. */
export function batchValue(name: string, elemType: number, dims: number[]): Onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: { elemType, shape: { dim: [{ dimParam: 'N' }, ...dims.map((d) => ({ dimValue: d }))] } },
    },
  }
}

export interface GraphSpec {
  name: string
  nodes: Onnx.INodeProto[]
  initializers: Onnx.ITensorProto[]
  inputs: Onnx.IValueInfoProto[]
  outputs: Onnx.IValueInfoProto[]
  metadata: Record<string, string>
  docString: string
}

/** ONNX IR 8, default opset 17, ai.onnx.ml opset 3: all supported by onnxruntime 1.14 and later. */
export function encodeModel(g: GraphSpec): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'syndicate',
    producerVersion: '1',
    docString: g.docString,
    opsetImport: [
      { domain: '', version: 17 },
      { domain: 'ai.onnx.ml', version: 3 },
    ],
    metadataProps: Object.entries(g.metadata).map(([key, value]) => ({ key, value })),
    graph: {
      name: g.name,
      node: g.nodes,
      initializer: g.initializers,
      input: g.inputs,
      output: g.outputs,
    },
  })
  return onnx.ModelProto.encode(model).finish()
}

/** The metadata properties of an encoded model (empty when there are none or the bytes are not ONNX). */
export function readMetadata(bytes: Uint8Array): Record<string, string> {
  try {
    const m = onnx.ModelProto.decode(bytes)
    return Object.fromEntries((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']))
  } catch {
    return {}
  }
}
