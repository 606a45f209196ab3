import type { PartyChannel } from '../../crypto/channel.ts'

/**
 * The contract between joint-training algorithms and the node that runs them as jobs.
 *
 * The node (node/jobs/training.ts) loads each party's registered dataset, aligns vertical data with PSI,
 * splits rows into train and test identically on every party (seeded, from the job), and then calls the
 * algorithm on every party at once with that party's local data. Algorithms talk to each other only through
 * `ctx.channel` (tags must start with `ctx.tagPrefix`), never see another party's raw values, and return each
 * party's model part. Joint prediction of new rows goes through `predict` with the same channel discipline.
 */
export interface JointContext {
  channel: PartyChannel
  /** This party's name (one of channel.parties). */
  self: string
  /** The party that holds the label (vertical) or the aggregator (horizontal). */
  labelHolder: string
  /** Prefix for every message tag of this run (unique per job and phase). */
  tagPrefix: string
  /** Algorithm hyper-parameters from the job spec (validate them; unknown keys are an error). */
  params: Record<string, unknown>
  /** Seed shared by all parties (derived from the job), for anything that must agree across parties. */
  seed: number
  signal: AbortSignal
  progress(p: { phase: string; done?: number; total?: number; message?: string }): void
}

/** One party's slice of the aligned rows: same row order on every party (vertical) or its own rows (horizontal). */
export interface LocalData {
  /** Row-major features, rows × features.length, already imputed and standardised as the party chooses. */
  X: Float64Array
  rows: number
  features: string[]
  /** Labels (0/1): the label holder only in vertical settings; every party in horizontal settings. */
  y?: Uint8Array
}

/** What a party keeps of a jointly trained model: plain JSON data (no secret shares of others, no raw rows). */
export interface ModelPart {
  algorithm: string
  /** The party's own parameters (its weights, its split thresholds, its layer…), as JSON-serialisable data. */
  params: unknown
  /** Features of this party the part uses, in the order `predict` expects them. */
  features: string[]
}

export interface VerticalAlgorithm {
  name: string
  train(ctx: JointContext, data: LocalData): Promise<ModelPart>
  /**
   * Joint scores of `data.rows` aligned rows: every party calls it with its own columns of the same rows;
   * the label holder gets probabilities, the others get null.
   */
  predict(ctx: JointContext, part: ModelPart, data: LocalData): Promise<Float64Array | null>
}

export interface HorizontalAlgorithm {
  name: string
  /** Every party ends with the same global model part (and so the same predictions on its own rows). */
  train(ctx: JointContext, data: LocalData): Promise<ModelPart>
  predict(part: ModelPart, data: LocalData): Float64Array
}
