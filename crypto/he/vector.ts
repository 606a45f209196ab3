import type { Ciphertext } from 'node-seal'

/** Values to encrypt or to combine with ciphertexts: numbers for CKKS; integers (number or bigint) for BFV. */
export type HeInput = ArrayLike<number> | ArrayLike<bigint>

/** An encrypted packed vector: `length` values in ceil(length / slots) SEAL ciphertexts under key `keyId`. */
export class HeVector {
  readonly length: number
  readonly keyId: string
  /** The SEAL ciphertexts, owned by this vector (one per `slots` values). */
  readonly ciphertexts: readonly Ciphertext[]
  #freed = false

  constructor(ciphertexts: Ciphertext[], length: number, keyId: string) {
    this.ciphertexts = ciphertexts
    this.length = length
    this.keyId = keyId
  }

  get freed(): boolean {
    return this.#freed
  }

  /** Releases the ciphertexts' WebAssembly memory. Idempotent. */
  free(): void {
    if (this.#freed) return
    this.#freed = true
    for (const ct of this.ciphertexts) ct.delete()
  }
}
