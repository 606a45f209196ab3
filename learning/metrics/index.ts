export { type LiftRow, liftTable } from './lift.ts'
export { brier, type CalibrationBin, calibrationTable, logLoss } from './probability.ts'
export { type PsiResult, psi } from './psi.ts'
export { auc, gini, ks } from './ranking.ts'
