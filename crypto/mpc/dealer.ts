/**
 * Dealer mode: one party named in the job spec generates all correlated randomness (the trust assumption of
 * SecretFlow's SEMI2K "trusted first party"): the dealer learns the masks and could unmask every opened value,
 * so it must not collude with anyone and should not see the traffic. Used when the parties accept that, or for
 * simulation; `HeTripleSource` needs no trusted party.
 *
 * Pairwise PRG seeds cut communication: at setup the dealer sends each computing party a 16-byte seed; a party
 * derives its shares of A, B (and of C, bits, ...) from its seed, and the dealer, who can replay every stream,
 * computes the single correction share that makes the sums right. If the dealer is itself a computing party,
 * it keeps that correction share and dealing sends nothing at all; otherwise it sends only the correction
 * share, to the first computing party, so every correlation must then be in the prepared plan.
 */
import type { PartyChannel } from '../channel.ts'
import { SyndicateError } from '../errors.ts'
import { freshSeed, Prg, privatePrg, SEED_BYTES } from './prg.ts'
import {
  type Ring,
  ringAdd,
  ringAnd,
  ringConcat,
  ringMatmul,
  ringMul,
  ringShr,
  ringSub,
  ringXor,
} from './ring.ts'
import {
  type Correlation,
  type CorrelationRequest,
  type EdaBits,
  ERR_MPC_UNSUPPORTED,
  requestKey,
  StockedSource,
  type Triple,
} from './source.ts'
import { ringFromBytes, ringToBytes } from './wire.ts'

export interface DealerOptions {
  /** The party that deals; a computing party (no dealing traffic) or a helper outside `computeParties`. */
  dealer: string
  /** The parties that compute; default every party of the channel. */
  computeParties?: readonly string[]
  /** Tag namespace, unique per job and source. */
  tag?: string
}

export class DealerSource extends StockedSource {
  readonly kind = 'dealer' as const
  readonly boolean = true
  private readonly ch: PartyChannel
  private readonly dealer: string
  private readonly holder: string
  private readonly compute: readonly string[]
  private readonly tag: string
  /** On a computing party: its own stream. On the dealer: every computing party's stream. */
  private readonly streams: Map<string, Prg>
  private readonly secret = privatePrg()
  private counter = 0

  private constructor(
    ch: PartyChannel,
    opts: DealerOptions,
    compute: readonly string[],
    streams: Map<string, Prg>,
  ) {
    super()
    this.ch = ch
    this.dealer = opts.dealer
    this.compute = compute
    this.holder = compute.includes(opts.dealer) ? opts.dealer : compute[0]
    this.tag = opts.tag ?? 'mpc/dealer'
    this.streams = streams
  }

  /** Setup (one message from the dealer to each other computing party): distributes the PRG seeds. */
  static async create(ch: PartyChannel, opts: DealerOptions): Promise<DealerSource> {
    const compute = opts.computeParties ?? ch.parties
    const tag = opts.tag ?? 'mpc/dealer'
    if (
      !ch.parties.includes(opts.dealer) ||
      compute.length < 2 ||
      compute.some((p) => !ch.parties.includes(p))
    ) {
      throw new SyndicateError(
        'ERR_MPC_PARTIES',
        `dealer ${opts.dealer} and at least two computing parties must be parties of the channel`,
      )
    }
    const streams = new Map<string, Prg>()
    if (ch.self === opts.dealer) {
      for (const p of compute) {
        const seed = freshSeed()
        streams.set(p, new Prg(seed))
        if (p !== ch.self) await ch.send(p, `${tag}/seed`, seed)
      }
    } else if (compute.includes(ch.self)) {
      const seed = await ch.recv(opts.dealer, `${tag}/seed`)
      if (seed.byteLength !== SEED_BYTES) {
        throw new SyndicateError('ERR_MPC_BAD_MESSAGE', `dealer ${opts.dealer} sent a malformed seed`)
      }
      streams.set(ch.self, new Prg(seed))
    }
    return new DealerSource(ch, opts, compute, streams)
  }

  /** An external dealer's offline phase: deals `plan` (the same plan the computing parties prepare). */
  async serve(plan: readonly CorrelationRequest[]): Promise<void> {
    for (const req of plan) await this.generate(req, false)
  }

  protected async generate(req: CorrelationRequest, onDemand: boolean): Promise<Correlation> {
    const external = !this.compute.includes(this.dealer)
    if (external && onDemand) {
      throw new SyndicateError(
        ERR_MPC_UNSUPPORTED,
        `${requestKey(req)} was not prepared; with an external dealer every correlation must be in the prepared plan`,
      )
    }
    const id = this.counter++
    if (this.ch.self === this.dealer) {
      const [mine, correction] = this.deal(req)
      if (external) await this.ch.send(this.holder, `${this.tag}/${id}`, ringToBytes(correction))
      return mine
    }
    const own = this.streams.get(this.ch.self)
    if (!own)
      throw new SyndicateError('ERR_MPC_PARTIES', `${this.ch.self} is not a computing party of this dealer`)
    const draw = drawShares(req, own, this.ch.self === this.holder)
    if (this.ch.self !== this.holder) return draw
    const correction = ringFromBytes(
      await this.ch.recv(this.dealer, `${this.tag}/${id}`),
      correctionLength(req),
      this.dealer,
      `${this.tag}/${id}`,
    )
    return withCorrection(req, draw, correction)
  }

  /** Replays every party's stream; returns the dealer's own correlation and the holder's correction share. */
  private deal(req: CorrelationRequest): [Correlation, Ring] {
    const draws = new Map<string, Correlation>()
    for (const p of this.compute) draws.set(p, drawShares(req, this.streams.get(p)!, p === this.holder))
    const others = this.compute.filter((p) => p !== this.holder)
    const sum = (pick: (c: Correlation) => Ring, parties: readonly string[]) =>
      parties.map((p) => pick(draws.get(p)!)).reduce((x, y) => ringAdd(x, y))
    const xor = (pick: (c: Correlation) => Ring, parties: readonly string[]) =>
      parties.map((p) => pick(draws.get(p)!)).reduce((x, y) => ringXor(x, y))
    let correction: Ring
    switch (req.kind) {
      case 'matmul':
      case 'mul': {
        const A = sum((c) => (c as Triple).a, this.compute)
        const B = sum((c) => (c as Triple).b, this.compute)
        const C = req.kind === 'matmul' ? ringMatmul(A, B, req.m, req.k, req.n) : ringMul(A, B)
        correction = ringSub(
          C,
          sum((c) => (c as Triple).c, others),
        )
        break
      }
      case 'bits':
        correction = ringSub(
          this.secret.bits(req.n),
          sum((c) => c as Ring, others),
        )
        break
      case 'trunc': {
        const r = sum((c) => (c as TruncDraw).r, this.compute)
        const shifted = ringSub(
          ringShr(r, req.f),
          sum((c) => (c as TruncDraw).shifted, others),
        )
        const msb = ringSub(
          ringShr(r, 63),
          sum((c) => (c as TruncDraw).msb, others),
        )
        correction = ringConcat(shifted, msb)
        break
      }
      case 'and': {
        const A = xor((c) => (c as Triple).a, this.compute)
        const B = xor((c) => (c as Triple).b, this.compute)
        correction = ringXor(
          ringAnd(A, B),
          xor((c) => (c as Triple).c, others),
        )
        break
      }
      case 'edabit': {
        const r = sum((c) => (c as EdaBits).arith, this.compute)
        const bit = this.secret.bits(req.n)
        correction = ringConcat(
          ringXor(
            r,
            xor((c) => (c as EdaBits).bool, others),
          ),
          ringXor(
            bit,
            xor((c) => (c as EdaBits).bitBool, others),
          ),
          ringSub(
            bit,
            sum((c) => (c as EdaBits).bitArith, others),
          ),
        )
        break
      }
    }
    const own = this.compute.includes(this.dealer)
      ? withCorrection(req, draws.get(this.dealer)!, correction)
      : ({ a: new BigUint64Array(0), b: new BigUint64Array(0), c: new BigUint64Array(0) } as Triple)
    return [own, correction]
  }
}

type TruncDraw = { r: Ring; shifted: Ring; msb: Ring }

/** A party's PRG-derived shares; the holder draws only what it does not get from the dealer. */
function drawShares(req: CorrelationRequest, prg: Prg, holder: boolean): Correlation {
  const empty = new BigUint64Array(0)
  switch (req.kind) {
    case 'matmul':
    case 'mul':
    case 'and': {
      const [ak, bk, ck] =
        req.kind === 'matmul' ? [req.m * req.k, req.k * req.n, req.m * req.n] : [req.n, req.n, req.n]
      const a = prg.ring(ak)
      const b = prg.ring(bk)
      return { a, b, c: holder ? empty : prg.ring(ck) }
    }
    case 'bits':
      return holder ? empty : prg.ring(req.n)
    case 'trunc': {
      const r = prg.ring(req.n)
      return holder
        ? { r, shifted: empty, msb: empty }
        : { r, shifted: prg.ring(req.n), msb: prg.ring(req.n) }
    }
    case 'edabit': {
      const arith = prg.ring(req.n)
      return holder
        ? { arith, bool: empty, bitBool: empty, bitArith: empty }
        : { arith, bool: prg.ring(req.n), bitBool: prg.bits(req.n), bitArith: prg.ring(req.n) }
    }
  }
}

function correctionLength(req: CorrelationRequest): number {
  switch (req.kind) {
    case 'matmul':
      return req.m * req.n
    case 'trunc':
      return 2 * req.n
    case 'edabit':
      return 3 * req.n
    default:
      return req.n
  }
}

function withCorrection(req: CorrelationRequest, draw: Correlation, correction: Ring): Correlation {
  switch (req.kind) {
    case 'matmul':
    case 'mul':
    case 'and':
      return { ...(draw as Triple), c: correction }
    case 'bits':
      return correction
    case 'trunc':
      return {
        r: (draw as TruncDraw).r,
        shifted: correction.slice(0, req.n),
        msb: correction.slice(req.n),
      }
    case 'edabit':
      return {
        arith: (draw as EdaBits).arith,
        bool: correction.slice(0, req.n),
        bitBool: correction.slice(req.n, 2 * req.n),
        bitArith: correction.slice(2 * req.n),
      }
  }
}
