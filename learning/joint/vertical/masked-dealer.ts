/**
 * Dealer-made correlations for products with a matrix that is masked only once (SecureML's offline phase):
 * the shared design matrix X is opened once as E = X − A for a random shared mask A, and every mini-batch B
 * then needs only a fresh mask b (of the weights) with shares of A_B·b for the forward product, and a fresh
 * mask b' (of the residuals) with shares of A_Bᵀ·b' for the gradient. Online, a batch opens w − b (D values)
 * and r − b' (|B| values) instead of the whole masked X_B twice, as generic Beaver matrix triples would.
 *
 * Like the engine's DealerSource (same trust assumption: the dealer knows A and every b, so it must not
 * collude or see the traffic), every computing party derives its shares from a 16-byte seed the dealer sends
 * it, and the dealer, replaying every stream, computes the one correction share that makes the products
 * right. If the dealer computes too it keeps the correction itself and dealing sends nothing; otherwise it
 * sends the corrections to the first computing party.
 */
import type { PartyChannel } from '../../../crypto/channel.ts'
import { SyndicateError } from '../../../crypto/errors.ts'
import { freshSeed, Prg, SEED_BYTES } from '../../../crypto/mpc/prg.ts'
import { type Ring, ringAdd, ringMatmul, ringSub } from '../../../crypto/mpc/ring.ts'
import { ringFromBytes, ringToBytes } from '../../../crypto/mpc/wire.ts'

/** One batch's correlations at one party: shares of b, A_B·b, b' and A_Bᵀ·b'. */
export interface BatchMasks {
  b: Ring
  c: Ring
  b2: Ring
  c2: Ring
}

export class MaskedMatrixDealer {
  private readonly ch: PartyChannel
  private readonly dealer: string
  private readonly holder: string
  private readonly compute: readonly string[]
  private readonly tag: string
  /** Computing party: its own stream. Dealer: every computing party's stream. */
  private readonly streams: Map<string, Prg>
  private readonly rows: number
  private readonly cols: number
  /** The dealer's sum A of all mask shares. */
  private maskSum: Ring | undefined
  private counter = 0

  private constructor(
    ch: PartyChannel,
    dealer: string,
    compute: readonly string[],
    tag: string,
    streams: Map<string, Prg>,
    rows: number,
    cols: number,
  ) {
    this.ch = ch
    this.dealer = dealer
    this.compute = compute
    this.holder = compute.includes(dealer) ? dealer : compute[0]
    this.tag = tag
    this.streams = streams
    this.rows = rows
    this.cols = cols
  }

  /** Setup for a rows × cols mask: the dealer sends each other computing party a seed. */
  static async create(
    ch: PartyChannel,
    opts: { dealer: string; computeParties: readonly string[]; tag: string; rows: number; cols: number },
  ): Promise<MaskedMatrixDealer> {
    const { dealer, computeParties: compute, tag } = opts
    const streams = new Map<string, Prg>()
    if (ch.self === dealer) {
      for (const p of compute) {
        const seed = freshSeed()
        streams.set(p, new Prg(seed))
        if (p !== ch.self) await ch.send(p, `${tag}/seed`, seed)
      }
    } else {
      const seed = await ch.recv(dealer, `${tag}/seed`)
      if (seed.byteLength !== SEED_BYTES) {
        throw new SyndicateError('ERR_MPC_BAD_MESSAGE', `dealer ${dealer} sent a malformed seed`, {
          from: dealer,
        })
      }
      streams.set(ch.self, new Prg(seed))
    }
    return new MaskedMatrixDealer(ch, dealer, compute, tag, streams, opts.rows, opts.cols)
  }

  /** This party's share of the mask A (rows × cols); call once, before any batch. */
  mask(): Ring {
    const n = this.rows * this.cols
    if (this.ch.self === this.dealer) {
      const shares = this.compute.map((p) => (this.streams.get(p) as Prg).ring(n))
      this.maskSum = shares.reduce((x, y) => ringAdd(x, y))
      const own = this.compute.indexOf(this.ch.self)
      return own >= 0 ? shares[own] : new BigUint64Array(0)
    }
    return (this.streams.get(this.ch.self) as Prg).ring(n)
  }

  /** The correlations of a batch of rows `idx` (every party, and the dealer, in the same order). */
  async batch(idx: Uint32Array): Promise<BatchMasks> {
    const m = idx.length
    const k = this.cols
    const id = `${this.tag}/${this.counter++}`
    const draw = (prg: Prg, holder: boolean): BatchMasks => {
      const empty = new BigUint64Array(0)
      const b = prg.ring(k)
      const c = holder ? empty : prg.ring(m)
      const b2 = prg.ring(m)
      const c2 = holder ? empty : prg.ring(k)
      return { b, c, b2, c2 }
    }
    if (this.ch.self === this.dealer) {
      const draws = new Map(this.compute.map((p) => [p, draw(this.streams.get(p) as Prg, p === this.holder)]))
      const sum = (pick: (d: BatchMasks) => Ring, parties: readonly string[]) =>
        parties.map((p) => pick(draws.get(p) as BatchMasks)).reduce((x, y) => ringAdd(x, y))
      const A = this.maskSum as Ring
      const AB = gatherRows(A, idx, k)
      const others = this.compute.filter((p) => p !== this.holder)
      const zero = (len: number) => new BigUint64Array(len)
      const c = ringSub(
        ringMatmul(
          AB,
          sum((d) => d.b, this.compute),
          m,
          k,
          1,
        ),
        others.length ? sum((d) => d.c, others) : zero(m),
      )
      const c2 = ringSub(
        ringMatmul(
          sum((d) => d.b2, this.compute),
          AB,
          1,
          m,
          k,
        ),
        others.length ? sum((d) => d.c2, others) : zero(k),
      )
      if (this.holder !== this.ch.self) {
        const out = new BigUint64Array(m + k)
        out.set(c)
        out.set(c2, m)
        await this.ch.send(this.holder, id, ringToBytes(out))
        return { b: zero(0), c: zero(0), b2: zero(0), c2: zero(0) }
      }
      return { ...(draws.get(this.holder) as BatchMasks), c, c2 }
    }
    const mine = draw(this.streams.get(this.ch.self) as Prg, this.ch.self === this.holder)
    if (this.ch.self !== this.holder) return mine
    const corr = ringFromBytes(await this.ch.recv(this.dealer, id), m + k, this.dealer, id)
    return { ...mine, c: corr.slice(0, m), c2: corr.slice(m) }
  }
}

/** Rows `idx` of a rows × cols ring matrix (copied through 32-bit views: no per-row subarray objects). */
export function gatherRows(M: Ring, idx: Uint32Array, cols: number): Ring {
  const out = new BigUint64Array(idx.length * cols)
  const src = new Uint32Array(M.buffer, M.byteOffset, 2 * M.length)
  const dst = new Uint32Array(out.buffer)
  const w = 2 * cols
  for (let k = 0; k < idx.length; k++) {
    const from = idx[k] * w
    const to = k * w
    for (let j = 0; j < w; j++) dst[to + j] = src[from + j]
  }
  return out
}
