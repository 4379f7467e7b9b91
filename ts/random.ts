/**
 * The scenario generator's random numbers at their old path, dist/random.js, which outside tools
 * (the shared perf harness, ../shared/perf) import directly. The code lives in scenario/random.ts.
 */
export { SplitMix64 } from './scenario/random.js';
