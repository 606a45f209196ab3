/** Homomorphic encryption for Syndicate: see docs/he.md. */
export { ENVELOPE_KIND } from './envelope.ts'
export { HeEvaluator } from './evaluator.ts'
export { HeKeyOwner, type KeyGenOptions } from './owner.ts'
export { type GhPacking, type GhPackingOptions, packGh, planGhPacking, unpackGhSum } from './packing.ts'
export { HE_PRESETS, type HePresetName, isPresetName, slotCount, sumSlotsSteps } from './params.ts'
export { type HeInput, HeVector } from './vector.ts'
