/** Seeded stratified train/test split: each class is shuffled and cut separately, so both parts keep the base rate. */
import { SyndicateError } from '../../crypto/errors.ts'
import { createRng, shuffleInPlace } from '../random.ts'
import { type Dataset, requireLabels, subset } from './dataset.ts'

export interface SplitIndices {
  train: Uint32Array
  test: Uint32Array
}

/** Indices of a stratified split of labels `y`; `testFraction` of each class (rounded) goes to test. */
export function stratifiedSplitIndices(y: Uint8Array, testFraction: number, seed: number): SplitIndices {
  if (!(testFraction > 0 && testFraction < 1)) {
    throw new SyndicateError('ERR_LEARN_PARAMS', `testFraction must be in (0, 1), got ${testFraction}.`)
  }
  const rng = createRng(seed)
  const train: number[] = []
  const test: number[] = []
  for (const cls of [0, 1]) {
    const idx: number[] = []
    for (let i = 0; i < y.length; i++) if (y[i] === cls) idx.push(i)
    shuffleInPlace(idx, rng)
    const nTest = Math.round(idx.length * testFraction)
    test.push(...idx.slice(0, nTest))
    train.push(...idx.slice(nTest))
  }
  // Sorted so that the parts keep file order (deterministic and readable); the shuffle only chose membership.
  return { train: Uint32Array.from(train).sort(), test: Uint32Array.from(test).sort() }
}

/** Stratified split of a labelled dataset, default 80/20. */
export function stratifiedSplit(
  ds: Dataset,
  seed: number,
  testFraction = 0.2,
): { train: Dataset; test: Dataset } {
  const { train, test } = stratifiedSplitIndices(requireLabels(ds), testFraction, seed)
  return { train: subset(ds, train), test: subset(ds, test) }
}
