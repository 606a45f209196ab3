export {
  canonicalDecimal,
  ERR_PSI_BAD_ID,
  type NormaliseOptions,
  normaliseId,
  normaliseIds,
} from './normalise.ts'
export { ERR_PSI_BAD_POINT, PsiPool, sharedPsiPool } from './pool.ts'
export { intersect, type PsiOptions, type PsiResult, runPsi } from './psi.ts'
export { ERR_PSI_BAD_MESSAGE, ERR_PSI_PARAMS } from './stream.ts'
