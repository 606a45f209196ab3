/**
 * `npm run bench -- he [--presets ckks-8192,bfv-8192] [--iterations N]`: homomorphic operations per preset.
 * For each operation: seconds per ciphertext (one ciphertext = `slots` values), ciphertexts and values per
 * second, and the same operation on plaintext Float64 vectors of `slots` values as the baseline (encrypt and
 * decrypt compare with copying the vector). Then serialised sizes: a ciphertext compressed (zstd) and
 * uncompressed, the seeded form the key owner sends, and the public key bundle per rotation step.
 */
import { HeKeyOwner, type HeVector } from '../crypto/he/index.ts'
import { HE_PRESETS, type HePresetName, isPresetName, slotCount } from '../crypto/he/params.ts'
import { loadSeal } from '../crypto/he/seal.ts'
import { emit, ratio, timeBest } from './report.ts'

const DEFAULT_PRESETS: HePresetName[] = ['ckks-8192', 'ckks-16384', 'bfv-8192']

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}

export default async function (argv: string[]): Promise<void> {
  const presets = (flag(argv, 'presets')?.split(',') ?? DEFAULT_PRESETS).map((p) => {
    if (!isPresetName(p)) throw new Error(`unknown preset ${p}; use ${Object.keys(HE_PRESETS).join(', ')}`)
    return p
  })
  const iterationsFlag = flag(argv, 'iterations')
  for (const preset of presets) {
    const spec = HE_PRESETS[preset]
    const iterations = iterationsFlag ? Number(iterationsFlag) : spec.polyDegree >= 16384 ? 4 : 10
    await benchPreset(preset, iterations)
  }
}

async function benchPreset(preset: HePresetName, iterations: number): Promise<void> {
  const slots = slotCount(preset)
  const ckks = HE_PRESETS[preset].scheme === 'ckks'
  const t0 = performance.now()
  const owner = await HeKeyOwner.generate(preset, { relin: true, rotations: [1] })
  const keygenS = (performance.now() - t0) / 1000
  const ev = owner.evaluator
  const x = ckks
    ? Float64Array.from({ length: slots }, (_, i) => Math.sin(i) * 0.5)
    : Array.from({ length: slots }, (_, i) => (i % 1000) - 500)
  const xf = Float64Array.from(x as ArrayLike<number>)
  const yf = Float64Array.from(xf, (v) => v * 0.5 + 1)
  const a = ev.encrypt(x)
  const b = ev.encrypt(x)

  // Plaintext baselines on Float64 vectors of the same length (many repetitions: they take microseconds).
  const out = new Float64Array(slots)
  const plainReps = 2000
  const plain = (f: () => void) =>
    timeBest(() => {
      for (let k = 0; k < plainReps; k++) f()
    }).then((s) => s / plainReps)
  const base = {
    copy: await plain(() => out.set(xf)),
    add: await plain(() => {
      for (let i = 0; i < slots; i++) out[i] = xf[i] + yf[i]
    }),
    mul: await plain(() => {
      for (let i = 0; i < slots; i++) out[i] = xf[i] * yf[i]
    }),
    rotate: await plain(() => {
      out.set(xf.subarray(1))
      out[slots - 1] = xf[0]
    }),
  }

  const he = (f: () => unknown) =>
    timeBest(() => {
      for (let k = 0; k < iterations; k++) {
        const r = f()
        if (r && typeof r === 'object' && 'free' in r) (r as HeVector).free()
      }
    }).then((s) => s / iterations)
  const decrypt = () => (ckks ? owner.decrypt(a) : owner.decryptIntegers(a))
  const ops: [string, () => unknown, number][] = [
    ['encrypt', () => ev.encrypt(x), base.copy],
    ['add', () => ev.add(a, b), base.add],
    ['multiply_plain', () => ev.multiplyPlain(a, ckks ? yf : (x as number[])), base.mul],
    ['multiply_relinearise', () => ev.multiply(a, b), base.mul],
    ['rotate', () => ev.rotate(a, 1), base.rotate],
    ['decrypt', decrypt, base.copy],
  ]
  for (const [op, f, baseline] of ops) {
    const seconds = await he(f)
    emit({
      bench: 'he',
      case: `${preset}/${op}`,
      seconds,
      ops_per_s: 1 / seconds,
      values_per_s: slots / seconds,
      slots,
      baseline_s: baseline,
      ratio: ratio(seconds, baseline),
    })
  }

  if (ckks) {
    // Decryption error of each operation against the Float64 result (values of magnitude <= 0.5).
    const err = (v: HeVector, want: (i: number) => number) => {
      const got = owner.decrypt(v)
      v.free()
      let m = 0
      for (let i = 0; i < slots; i++) m = Math.max(m, Math.abs(got[i] - want(i)))
      return m
    }
    emit({
      bench: 'he',
      case: `${preset}/max_abs_error`,
      encrypt: err(ev.encrypt(xf), (i) => xf[i]),
      multiply_plain: err(ev.multiplyPlain(a, yf), (i) => xf[i] * yf[i]),
      multiply_relinearise: err(ev.multiply(a, b), (i) => xf[i] * xf[i]),
      rotate: err(ev.rotate(a, 1), (i) => xf[(i + 1) % slots]),
    })
  }

  const { seal } = await loadSeal()
  const ct = a.ciphertexts[0]
  const raw = (ct.saveToArray(seal.ComprModeType.none) as Uint8Array).length
  const zstd = ev.serialize(a).length
  const seeded = owner.encryptToBytes(x).length
  emit({
    bench: 'he',
    case: `${preset}/ciphertext_bytes`,
    bytes: zstd,
    bytes_uncompressed: raw,
    bytes_seeded: seeded,
    bytes_per_value: zstd / slots,
    baseline_bytes: slots * 8,
    ratio: zstd / (slots * 8),
    slots,
  })
  const withoutGalois = await HeKeyOwner.generate(preset, { relin: true })
  emit({
    bench: 'he',
    case: `${preset}/keys`,
    keygen_s: keygenS,
    public_bundle_bytes: withoutGalois.publicBundle().length,
    galois_key_bytes_per_step: owner.publicBundle().length - withoutGalois.publicBundle().length,
  })
  withoutGalois.free()
  a.free()
  b.free()
  owner.free()
}
