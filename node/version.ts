import pkg from '../package.json' with { type: 'json' }

/** The software version, from package.json, reported by the API and to peers. */
export const SOFTWARE_VERSION: string = pkg.version
