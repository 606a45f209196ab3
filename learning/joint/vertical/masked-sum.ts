/**
 * The label holder's sum of the feature holders' vectors (partial logits, cut-layer pre-activations),
 * hiding each summand when there are two or more feature holders.
 *
 * Every pair of feature holders shares a PRG seed (the earlier party in channel order picks it and sends it
 * to the other); each holder encodes its vector in fixed point (Z_2^64, 32 fractional bits), adds the streams
 * it shares with later holders and subtracts those it shares with earlier ones, and sends the result. The
 * masks cancel in the sum, so the label holder learns Σ_p v_p exactly (to 2^-33) and, as long as two feature
 * holders do not collude with it, nothing about any single v_p. With one feature holder there is nothing to
 * mask against: the label holder learns that holder's vector (docs/vertical-lr.md, docs/vertical-nn.md).
 */
import { SyndicateError } from '../../../crypto/errors.ts'
import { decodeFixed, encodeFixed } from '../../../crypto/fixed.ts'
import { freshSeed, Prg, SEED_BYTES } from '../../../crypto/mpc/prg.ts'
import { type Ring, ringAdd, ringSub } from '../../../crypto/mpc/ring.ts'
import { ringFromBytes, ringToBytes } from '../../../crypto/mpc/wire.ts'
import type { JointContext } from '../types.ts'
import { badMessage } from './wire.ts'

const FRAC = 32

export class MaskedSum {
  private readonly ctx: JointContext
  /** Feature holders (every party but the label holder), in channel order. */
  readonly holders: readonly string[]
  /** This holder's pairwise streams and their sign (+1 towards later holders, −1 towards earlier ones). */
  private readonly pairs: { prg: Prg; add: boolean }[]

  private constructor(ctx: JointContext, holders: string[], pairs: { prg: Prg; add: boolean }[]) {
    this.ctx = ctx
    this.holders = holders
    this.pairs = pairs
  }

  /** Setup: pairwise seeds among the feature holders (the label holder takes no part). */
  static async create(ctx: JointContext, tag: string): Promise<MaskedSum> {
    const ch = ctx.channel
    const holders = ch.parties.filter((p) => p !== ctx.labelHolder)
    const pairs: { prg: Prg; add: boolean }[] = []
    const me = holders.indexOf(ctx.self)
    if (me >= 0) {
      for (const [j, q] of holders.entries()) {
        if (j <= me) continue
        const seed = freshSeed()
        await ch.send(q, `${tag}/seed`, seed)
        pairs.push({ prg: new Prg(seed), add: true })
      }
      for (const [j, q] of holders.entries()) {
        if (j >= me) continue
        const seed = await ch.recv(q, `${tag}/seed`)
        if (seed.byteLength !== SEED_BYTES) throw badMessage(q, `${tag}/seed`, 'malformed seed')
        pairs.push({ prg: new Prg(seed), add: false })
      }
    }
    return new MaskedSum(ctx, holders, pairs)
  }

  /** Feature holder: sends its masked vector to the label holder. */
  async send(tag: string, values: Float64Array): Promise<void> {
    let v = encodeFixed(values, FRAC)
    for (const { prg, add } of this.pairs) {
      const r = prg.ring(values.length)
      v = add ? ringAdd(v, r) : ringSub(v, r)
    }
    await this.ctx.channel.send(this.ctx.labelHolder, tag, ringToBytes(v))
  }

  /** Label holder: the sum of every feature holder's vector of `length` values sent under `tag`. */
  async receive(tag: string, length: number): Promise<Float64Array> {
    if (this.ctx.self !== this.ctx.labelHolder) {
      throw new SyndicateError('ERR_JOINT_ROLE', `${this.ctx.self} is not the label holder`)
    }
    let sum: Ring = new BigUint64Array(length)
    for (const q of this.holders) {
      const bytes = await this.ctx.channel.recv(q, tag)
      if (bytes.byteLength !== 8 * length) {
        throw badMessage(q, tag, `${bytes.byteLength} bytes, expected ${8 * length}`)
      }
      sum = ringAdd(sum, ringFromBytes(bytes, length, q, tag))
    }
    return decodeFixed(sum, FRAC)
  }
}
