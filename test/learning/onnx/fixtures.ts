/**
 * Hand-built models for the ONNX and scoring tests: random weights and random trees whose thresholds are
 * feature values taken from the data, so many rows sit exactly at a threshold (the case float32 rounding
 * could flip).
 */
import { loadCsv } from '../../../learning/data/csv.ts'
import type { Dataset } from '../../../learning/data/dataset.ts'
import type {
  GbdtModel,
  LogisticRegressionModel,
  MlpModel,
  RegressionTree,
} from '../../../learning/models/types.ts'
import { createRng, type Rng } from '../../../learning/random.ts'
import { DATA_DIR } from '../../helpers/data.ts'

export { DATA_DIR }

/** A FATE-style file of the bundled data: id column `id`, label `y`, features x0.. */
export function loadFate(file: string): Dataset {
  return loadCsv(`${DATA_DIR}/${file}`, { id: 'id', label: 'y' })
}

export function randomLr(features: string[], rng: Rng, withPre = true): LogisticRegressionModel {
  return {
    kind: 'lr',
    features,
    preprocessing: withPre
      ? {
          impute: features.map(() => rng.normal()),
          standardize: {
            mean: features.map(() => rng.normal()),
            scale: features.map(() => 0.5 + rng.next()),
          },
        }
      : {},
    weights: features.map(() => rng.normal() * 0.5),
    bias: rng.normal(),
  }
}

export function randomMlp(features: string[], rng: Rng, hidden = [32, 16]): MlpModel {
  const sizes = [features.length, ...hidden, 1]
  return {
    kind: 'mlp',
    features,
    preprocessing: {
      impute: features.map(() => 0),
      standardize: { mean: features.map(() => 0.1), scale: features.map(() => 1.5) },
    },
    layers: sizes.slice(1).map((out, k) => ({
      weights: Array.from({ length: out }, () =>
        Array.from({ length: sizes[k] }, () => rng.normal() / Math.sqrt(sizes[k])),
      ),
      bias: Array.from({ length: out }, () => rng.normal() * 0.1),
    })),
  }
}

/**
 * A full binary tree of `depth` whose split thresholds are values of the split feature in the (preprocessed)
 * sample `Z` (row-major, d columns), so rows at a threshold are common.
 */
export function randomTree(Z: Float64Array, d: number, depth: number, rng: Rng): RegressionTree {
  const t: RegressionTree = { feature: [], threshold: [], left: [], right: [], missingLeft: [], value: [] }
  const n = Z.length / d
  const grow = (level: number): number => {
    const i = t.feature.length
    t.feature.push(-1)
    t.threshold.push(0)
    t.left.push(-1)
    t.right.push(-1)
    t.missingLeft.push(rng.next() < 0.5)
    t.value.push(0)
    if (level === depth) {
      t.value[i] = rng.normal() * 0.1
      return i
    }
    const f = rng.int(d)
    t.feature[i] = f
    t.threshold[i] = Z[rng.int(n) * d + f]
    t.left[i] = grow(level + 1)
    t.right[i] = grow(level + 1)
    return i
  }
  grow(0)
  // Node covers (rows of the sample reaching each node), which TreeSHAP reason codes need.
  t.cover = new Array(t.feature.length).fill(0)
  for (let r = 0; r < n; r++) {
    let i = 0
    for (;;) {
      t.cover[i]++
      if (t.feature[i] === -1) break
      const v = Z[r * d + t.feature[i]]
      i = (Number.isNaN(v) ? t.missingLeft[i] : v <= t.threshold[i]) ? t.left[i] : t.right[i]
    }
  }
  return t
}

export function randomGbdt(
  ds: Pick<Dataset, 'featureNames' | 'X'>,
  rng: Rng,
  trees = 20,
  depth = 5,
  preprocessing: GbdtModel['preprocessing'] = {},
): GbdtModel {
  const d = ds.featureNames.length
  const std = preprocessing.standardize
  const Z = std ? ds.X.map((x, i) => (x - std.mean[i % d]) / std.scale[i % d]) : ds.X
  return {
    kind: 'gbdt',
    features: ds.featureNames,
    preprocessing,
    baseScore: -1.2,
    trees: Array.from({ length: trees }, () => randomTree(Z, d, depth, rng)),
  }
}

export { createRng }
