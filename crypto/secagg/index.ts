export { type KeyedClientOptions, KeyedSecAggAggregator, KeyedSecAggClient } from './keyed.ts'
export {
  type AggregateResult,
  type AggregatorOptions,
  ERR_SECAGG_BAD_MESSAGE,
  ERR_SECAGG_PARAMS,
  ERR_SECAGG_TOO_FEW,
  type SecAggOptions,
  secAggAggregate,
  secAggClient,
} from './secagg.ts'
