/** Vertical joint training (one label holder, any number of feature holders): docs/vertical-lr.md, docs/vertical-nn.md. */
export { heLogisticRegression } from './helr.ts'
export { splitNeuralNet } from './splitnn.ts'
export { ssLogisticRegression } from './sslr.ts'
