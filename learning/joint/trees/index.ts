/** Tree algorithms for joint training: SecureBoost (vertical, HE) and federated GBDT (horizontal, secagg). */
export { edgesFromGrid, FEDERATED_GBDT_NAME, federatedGbdt } from './federated.ts'
export {
  type FeatureHolderModel,
  type LabelHolderModel,
  type SbNode,
  SECUREBOOST_NAME,
  type SplitRule,
  secureBoost,
} from './secureboost.ts'
