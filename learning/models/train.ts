/** Train any plaintext model kind on a labelled dataset (all its feature columns, or the listed ones). */
import { type Dataset, featureMatrix, requireLabels } from '../data/dataset.ts'
import { type GbdtOptions, trainGbdt } from './gbdt.ts'
import { type LrOptions, trainLogisticRegression } from './lr.ts'
import { type MlpOptions, trainMlp } from './mlp.ts'
import { predictProba } from './predict.ts'
import type { GbdtModel, LogisticRegressionModel, MlpModel, Model } from './types.ts'

export function trainModel(
  kind: 'lr',
  ds: Dataset,
  opts?: LrOptions,
  features?: string[],
): LogisticRegressionModel
export function trainModel(kind: 'gbdt', ds: Dataset, opts?: GbdtOptions, features?: string[]): GbdtModel
export function trainModel(kind: 'mlp', ds: Dataset, opts?: MlpOptions, features?: string[]): MlpModel
/** Any family, with the options they share (a seed). */
export function trainModel(
  kind: Model['kind'],
  ds: Dataset,
  opts?: { seed?: number },
  features?: string[],
): Model
export function trainModel(
  kind: Model['kind'],
  ds: Dataset,
  opts: LrOptions | GbdtOptions | MlpOptions = {},
  features: string[] = ds.featureNames,
): Model {
  const X = featureMatrix(ds, features)
  const y = requireLabels(ds)
  if (kind === 'lr') return trainLogisticRegression(X, y, features, opts as LrOptions)
  if (kind === 'gbdt') return trainGbdt(X, y, features, opts as GbdtOptions)
  return trainMlp(X, y, features, opts as MlpOptions)
}

/** Probability of default for every row of a dataset (columns picked by the model's feature names). */
export function scoreDataset(model: Model, ds: Dataset): Float64Array {
  return predictProba(model, featureMatrix(ds, model.features), ds.ids.length)
}
