/**
 * ONNX export of fitted LR, GBDT and MLP models with their preprocessing, so one .onnx file scores raw rows.
 *
 * Every graph has the same signature: input `input` float32 [N, F] (F = model.features.length, in that order,
 * NaN = missing), outputs `probability` float32 [N, 1] = P(y = 1) and `label` int64 [N, 1] = probability >= 0.5.
 *
 * - LR / MLP: Imputer (ai.onnx.ml) → Sub(mean) → Div(scale) → Gemm layers (Relu between) → Sigmoid.
 * - GBDT: one TreeEnsembleRegressor (ai.onnx.ml, SUM, base_values = baseScore) → Sigmoid. We use the regressor
 *   rather than TreeEnsembleClassifier because its output is exactly the raw log-odds, which gives the same
 *   `probability` output as the other kinds; onnxruntime's classifier decides binary labels and fills the
 *   class-0 column by rules that depend on the sign of the leaf weights.
 *   Preprocessing is folded into the trees: standardisation is monotone, so `z <= t` on the standardised
 *   value is `x <= t·scale + mean` on the raw value (`x >= …`, i.e. NOT `x < …`, for a negative scale), and
 *   an imputed missing value always takes the branch its imputed value takes. Computing z in float32 would
 *   move rows that sit exactly at a threshold (the usual case: thresholds are data values) by a rounding
 *   error and could flip them; `rawThreshold` picks float32 thresholds that keep them (see docs/scoring.md).
 */
import type { GbdtModel, LogisticRegressionModel, MlpModel, Model, Preprocessing } from '../models/types.ts'
import { applyPreprocessing } from '../preprocess/scale.ts'
import { checkModel } from './check.ts'
import { batchValue, encodeModel, FLOAT, floatTensor, INT64, node } from './graph.ts'

export const INPUT_NAME = 'input'
export const PROBABILITY_OUTPUT = 'probability'
export const LABEL_OUTPUT = 'label'
/** Metadata keys carried in the ONNX file (ModelProto.metadata_props). */
export const META_FEATURES = 'syndicate.features'
export const META_KIND = 'syndicate.kind'

type Parts = Pick<Parameters<typeof encodeModel>[0], 'nodes' | 'initializers'>

/** Imputer → Sub → Div on `input`; returns the name of the preprocessed tensor. */
function preprocessNodes(p: Preprocessing, parts: Parts): string {
  let cur = INPUT_NAME
  if (p.impute) {
    parts.nodes.push(
      node(
        'Imputer',
        [cur],
        ['imputed'],
        { imputed_value_floats: { floats: p.impute }, replaced_value_float: Number.NaN },
        'ai.onnx.ml',
      ),
    )
    cur = 'imputed'
  }
  if (p.standardize) {
    const d = p.standardize.mean.length
    parts.initializers.push(
      floatTensor('mean', [d], p.standardize.mean),
      floatTensor('scale', [d], p.standardize.scale),
    )
    parts.nodes.push(
      node('Sub', [cur, 'mean'], ['centred']),
      node('Div', ['centred', 'scale'], ['standardized']),
    )
    cur = 'standardized'
  }
  return cur
}

function lrNodes(m: LogisticRegressionModel, parts: Parts): string {
  const x = preprocessNodes(m.preprocessing, parts)
  parts.initializers.push(floatTensor('W', [m.weights.length, 1], m.weights), floatTensor('B', [1], [m.bias]))
  parts.nodes.push(node('Gemm', [x, 'W', 'B'], ['logit']))
  return 'logit'
}

function mlpNodes(m: MlpModel, parts: Parts): string {
  let h = preprocessNodes(m.preprocessing, parts)
  m.layers.forEach((layer, k) => {
    const out = layer.weights.length
    const inp = layer.weights[0].length
    parts.initializers.push(
      floatTensor(`W${k}`, [out, inp], layer.weights.flat()),
      floatTensor(`B${k}`, [out], layer.bias),
    )
    // Gemm with transB takes weights as stored, [out][in].
    parts.nodes.push(node('Gemm', [h, `W${k}`, `B${k}`], [`dense${k}`], { transB: 1 }))
    h = `dense${k}`
    if (k < m.layers.length - 1) {
      parts.nodes.push(node('Relu', [h], [`relu${k}`]))
      h = `relu${k}`
    }
  })
  return h
}

/** Feature f's raw value after the model's preprocessing, exactly as the in-process predictor computes it. */
function preprocessValue(p: Preprocessing, f: number, x: number): number {
  const one: Preprocessing = {
    impute: p.impute && [p.impute[f]],
    standardize: p.standardize && { mean: [p.standardize.mean[f]], scale: [p.standardize.scale[f]] },
  }
  return applyPreprocessing(one, Float64Array.of(x), 1, 1)[0]
}

const f32 = new Float32Array(1)
const i32 = new Int32Array(f32.buffer)
const MAX_ORD = 0x7f7fffff // largest finite float32, as ordered bits
/** Float32 values as integers in the same order (adjacent floats are adjacent integers). */
function ord(v: number): number {
  f32[0] = v
  return i32[0] >= 0 ? i32[0] : -(i32[0] & 0x7fffffff)
}
function unord(k: number): number {
  i32[0] = k >= 0 ? k : -k | 0x80000000
  return f32[0]
}

/**
 * The float32 threshold on the raw feature for a split `z <= t` on the preprocessed feature f. For a
 * positive scale the left set of raw values is {x <= T}. T is the largest float32 whose preprocessed value
 * the float64 model sends left (so float32 inputs such as integer amounts and zero go where float64 sends
 * them, even when t·scale + mean comes back as -7e-12 for a threshold at 0), but at least the float32
 * rounding of t·scale + mean, so a decimal data value equal to the threshold stays left once the input is
 * rounded to float32. For a negative scale the left set is {x >= T}, mirrored.
 */
function rawThreshold(p: Preprocessing, f: number, t: number): number {
  if (!p.standardize) return Math.fround(t)
  const up = p.standardize.scale[f] > 0 ? 1 : -1
  const nearest = Math.fround(t * p.standardize.scale[f] + p.standardize.mean[f])
  // In the key k = up·ord(u) the left set is a down-set: find its largest key by doubling then bisection.
  const clamp = (k: number) => Math.max(-MAX_ORD, Math.min(MAX_ORD, k))
  const left = (k: number) => preprocessValue({ standardize: p.standardize }, f, unord(up * k)) <= t
  const k0 = up * ord(nearest)
  let lo: number
  let hi: number
  if (left(k0)) {
    lo = k0
    for (let step = 1; ; step *= 2) {
      hi = clamp(k0 + step)
      if (hi === lo || !left(hi)) break
      lo = hi
    }
  } else {
    hi = k0
    for (let step = 1; ; step *= 2) {
      lo = clamp(k0 - step)
      if (lo === hi || left(lo)) break
      hi = lo
    }
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (left(mid)) lo = mid
    else hi = mid
  }
  const best = unord(up * lo)
  return up === 1 ? Math.max(best, nearest) : Math.min(best, nearest)
}

function gbdtNodes(m: GbdtModel, parts: Parts): string {
  const p = m.preprocessing
  const a = {
    treeids: [] as number[],
    nodeids: [] as number[],
    featureids: [] as number[],
    values: [] as number[],
    modes: [] as string[],
    trueids: [] as number[],
    falseids: [] as number[],
    missingTrue: [] as number[],
    leafTree: [] as number[],
    leafNode: [] as number[],
    leafWeight: [] as number[],
  }
  m.trees.forEach((t, k) => {
    for (let i = 0; i < t.feature.length; i++) {
      const f = t.feature[i]
      a.treeids.push(k)
      a.nodeids.push(i)
      if (f === -1) {
        a.featureids.push(0)
        a.values.push(0)
        a.modes.push('LEAF')
        a.trueids.push(0)
        a.falseids.push(0)
        a.missingTrue.push(0)
        a.leafTree.push(k)
        a.leafNode.push(i)
        a.leafWeight.push(t.value[i])
        continue
      }
      const th = t.threshold[i]
      const missingLeft = p.impute ? preprocessValue(p, f, Number.NaN) <= th : t.missingLeft[i]
      const scale = p.standardize ? p.standardize.scale[f] : 1
      a.featureids.push(f)
      a.values.push(rawThreshold(p, f, th))
      if (scale > 0) {
        a.modes.push('BRANCH_LEQ')
        a.trueids.push(t.left[i])
        a.falseids.push(t.right[i])
        a.missingTrue.push(missingLeft ? 1 : 0)
      } else {
        a.modes.push('BRANCH_LT')
        a.trueids.push(t.right[i])
        a.falseids.push(t.left[i])
        a.missingTrue.push(missingLeft ? 0 : 1)
      }
    }
  })
  parts.nodes.push(
    node(
      'TreeEnsembleRegressor',
      [INPUT_NAME],
      ['logit'],
      {
        n_targets: 1,
        aggregate_function: 'SUM',
        post_transform: 'NONE',
        base_values: { floats: [m.baseScore] },
        nodes_treeids: a.treeids,
        nodes_nodeids: a.nodeids,
        nodes_featureids: a.featureids,
        nodes_values: { floats: a.values },
        nodes_modes: a.modes,
        nodes_truenodeids: a.trueids,
        nodes_falsenodeids: a.falseids,
        nodes_missing_value_tracks_true: a.missingTrue,
        target_treeids: a.leafTree,
        target_nodeids: a.leafNode,
        target_ids: a.leafTree.map(() => 0),
        target_weights: { floats: a.leafWeight },
      },
      'ai.onnx.ml',
    ),
  )
  return 'logit'
}

/** The ONNX protobuf bytes of a fitted model (see the module comment for the graph's signature). */
export function exportOnnx(model: Model): Uint8Array {
  checkModel(model)
  const parts: Parts = { nodes: [], initializers: [] }
  const logit =
    model.kind === 'lr'
      ? lrNodes(model, parts)
      : model.kind === 'gbdt'
        ? gbdtNodes(model, parts)
        : mlpNodes(model, parts)
  parts.initializers.push(floatTensor('half', [], [0.5]))
  parts.nodes.push(
    node('Sigmoid', [logit], [PROBABILITY_OUTPUT]),
    node('GreaterOrEqual', [PROBABILITY_OUTPUT, 'half'], ['positive']),
    node('Cast', ['positive'], [LABEL_OUTPUT], { to: INT64 }),
  )
  return encodeModel({
    name: `syndicate_${model.kind}`,
    ...parts,
    inputs: [batchValue(INPUT_NAME, FLOAT, [model.features.length])],
    outputs: [batchValue(PROBABILITY_OUTPUT, FLOAT, [1]), batchValue(LABEL_OUTPUT, INT64, [1])],
    metadata: { [META_KIND]: model.kind, [META_FEATURES]: JSON.stringify(model.features) },
    docString: `Syndicate ${model.kind} model: P(y=1) for ${model.features.length} raw features.`,
  })
}
