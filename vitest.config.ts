import { defineConfig } from 'vitest/config'

// Unit tests are pure and fast; e2e tests start real libp2p nodes on 127.0.0.1 (port 0, so files can run side by
// side). The heavy joint-training files run alongside the rest, which keeps the suite within its budget.
export default defineConfig({
  test: {
    reporters: ['default', 'json'],
    outputFile: { json: '.test-results/vitest.json' },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
})
