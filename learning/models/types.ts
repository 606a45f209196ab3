/**
 * Fitted model parameters as plain JSON-serialisable data: what training produces, what the ONNX exporter,
 * the scorer and the model registry consume. Every model carries its own input feature order and the fitted
 * preprocessing, so a model file alone scores raw rows.
 */

/** Fitted column transforms applied before the model, in order, to the model's `features` columns. */
export interface Preprocessing {
  /** Per-feature value substituted for a missing input (NaN), e.g. the training median. */
  impute?: number[]
  /** Standardisation: (x - mean) / scale, per feature; scale is never 0. */
  standardize?: { mean: number[]; scale: number[] }
}

export interface LogisticRegressionModel {
  kind: 'lr'
  features: string[]
  preprocessing: Preprocessing
  /** One weight per feature, applied to preprocessed values. */
  weights: number[]
  bias: number
}

/**
 * One regression tree as parallel arrays (node 0 is the root). For an internal node i: go to `left[i]` when
 * x[feature[i]] <= threshold[i] (missing values go to `missingLeft[i] ? left : right`), else `right[i]`.
 * A leaf has feature[i] === -1 and contributes `value[i]` to the raw score.
 */
export interface RegressionTree {
  feature: number[]
  threshold: number[]
  left: number[]
  right: number[]
  missingLeft: boolean[]
  value: number[]
  /**
   * Optional: training rows that reached each node (the root's is the training set size). Needed by
   * path-dependent TreeSHAP reason codes; scoring ignores it.
   */
  cover?: number[]
}

export interface GbdtModel {
  kind: 'gbdt'
  features: string[]
  preprocessing: Preprocessing
  /** Raw score before any tree (log-odds of the base rate). */
  baseScore: number
  /** Leaf values already include the learning rate. */
  trees: RegressionTree[]
}

export interface DenseLayer {
  /** weights[o][i]: output unit o from input i. */
  weights: number[][]
  bias: number[]
}

export interface MlpModel {
  kind: 'mlp'
  features: string[]
  preprocessing: Preprocessing
  /** Hidden layers use ReLU; the last layer has one output unit, passed through the logistic sigmoid. */
  layers: DenseLayer[]
}

export type Model = LogisticRegressionModel | GbdtModel | MlpModel
export type ModelKind = Model['kind']
