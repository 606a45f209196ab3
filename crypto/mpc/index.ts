/**
 * The secret-sharing MPC engine (docs/mpc.md). What protocols built on it use:
 *  - `MpcSession`: shares of fixed-point matrices; share/reveal, add/sub, matmul, mul, truncate, transpose;
 *    `sendInput` / `receiveOutput` for data holders outside the computing parties.
 *  - `sigmoid`, `lessThan`, `lessThanZero`, `relu`, `ltzRing`: non-linear functions on shares.
 *  - Correlated randomness (offline phase) behind `CorrelatedSource`: `DealerSource` (a named party deals) or
 *    `HeTripleSource` (two parties, BFV, no trusted party); `prepare(plan)` ahead of the online phase;
 *    `RecordingSource` learns a program's plan from a first run.
 */
export { type DealerOptions, DealerSource } from './dealer.ts'
export { FixedMatrix, HeTripleSource, type OwnedTriple } from './he-triples.ts'
export {
  lessThan,
  lessThanZero,
  ltzRing,
  relu,
  SIGMOID_BOUND,
  SIGMOID_DEGREE,
  sigmoid,
  sigmoidApprox,
} from './nonlinear.ts'
export type { Ring } from './ring.ts'
export {
  ERR_MPC_PARTIES,
  ERR_MPC_SHAPE,
  MpcSession,
  receiveOutput,
  type SessionOptions,
  type SharedMatrix,
  sendInput,
  type Truncation,
} from './session.ts'
export {
  type CorrelatedSource,
  type CorrelationRequest,
  ERR_MPC_UNSUPPORTED,
  RecordingSource,
  type Triple,
  type TruncPair,
} from './source.ts'
export { ERR_MPC_BAD_MESSAGE } from './wire.ts'
