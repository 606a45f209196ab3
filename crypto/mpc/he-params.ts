/**
 * The BFV parameters of the dealer-free generators (he-triples.ts, he-fixed.ts) and the key-free SEAL objects
 * built from them, which the peer-side worker thread (he-worker.ts) builds too.
 */
import type { BatchEncoder, Evaluator, MainModule, SEALContext } from 'node-seal'
import { HE_POLY_DEGREE } from './he-layout.ts'

/**
 * Ciphertext modulus: four data primes (162 bits) and a special prime, 216 bits in all (128-bit security at
 * N = 8192). Products are computed at the top level; the reply is masked and switched down two levels to 76
 * bits, which scales the computation's noise (the part that depends on the multiplier's plaintext) to ~2^-14
 * while the switch adds rounding noise of ~2^7: what the decrypting peer can measure is then dominated by
 * rounding, not by the multiplier's input (circuit privacy by modulus switching, short of full noise flooding).
 */
export const COEFF_BITS = [38, 38, 43, 43, 54]
/** Levels the masked reply is switched down before it is sent. */
export const REPLY_SWITCHES = 2
/** Three batching primes t_i of 60 bits: the CRT modulus T ≈ 2^180 holds sums of 64-bit products exactly. */
export const PLAIN_BITS = [60, 60, 60]

/** What evaluating (not encrypting or decrypting) under one CRT prime takes. */
export interface EvalContext {
  t: bigint
  ctx: SEALContext
  encoder: BatchEncoder
  evaluator: Evaluator
  /** Constants of the first data level (fresh ciphertexts and products), for plaintext additions. */
  top: LevelConstants
}

/** RNS constants of a level for adding Δ·m directly. */
export interface LevelConstants {
  primes: bigint[]
  /** Δ = ⌊q/t⌋ reduced mod each q_i. */
  delta: bigint[]
  /** (q mod t) / t as a double, for the rounding term. */
  rho: number
}

/** One context per CRT prime (the same on both parties and in the worker: the primes are deterministic). */
export function evalContexts(seal: MainModule): EvalContext[] {
  const plain = seal.PlainModulus.BatchingVector(HE_POLY_DEGREE, Int32Array.from(PLAIN_BITS))
  const out: EvalContext[] = []
  try {
    for (let i = 0; i < PLAIN_BITS.length; i++) {
      const parms = new seal.EncryptionParameters(seal.SchemeType.bfv)
      parms.setPolyModulusDegree(HE_POLY_DEGREE)
      const coeff = seal.CoeffModulus.Create(HE_POLY_DEGREE, Int32Array.from(COEFF_BITS))
      parms.setCoeffModulus(coeff)
      const t = plain.get(i)!
      parms.setPlainModulus(t)
      const ctx = new seal.SEALContext(parms, true, seal.SecLevelType.tc128)
      out.push({
        t: t.value(),
        ctx,
        encoder: new seal.BatchEncoder(ctx),
        evaluator: new seal.Evaluator(ctx),
        top: topLevel(ctx, t.value()),
      })
      for (const o of [parms, coeff, t]) o.delete()
    }
  } finally {
    plain.delete()
  }
  return out
}

export function deleteEval(p: EvalContext): void {
  for (const o of [p.encoder, p.evaluator, p.ctx]) o.delete()
}

/** Constants of the first data level of `ctx` for plaintext modulus t. */
function topLevel(ctx: SEALContext, t: bigint): LevelConstants {
  const vec = ctx.firstContextData().parms().coeffModulus()
  const primes: bigint[] = []
  for (let i = 0; i < vec.size(); i++) primes.push(vec.get(i)!.value())
  const q = primes.reduce((a, b) => a * b)
  return { primes, delta: primes.map((p) => (q / t) % p), rho: Number(q % t) / Number(t) }
}
