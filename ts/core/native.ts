/**
 * The generated N-API loader, kept private: product code goes through the documented API in
 * `exact.ts`. The loader is CommonJS (native/index.cjs), built by `npm run build:native`.
 */
import { createRequire } from 'node:module';
import type * as Binding from '../../native/index.cjs';

const require = createRequire(import.meta.url);

export type {
  AdamWOptions,
  AnalysisOutput,
  FineTuneName,
  FineTuneOptions,
  FineTuneOutput,
  FixedPointOutput,
  ObjectiveInput,
  ObjectiveOutput,
  OptimizerName,
  PolicyInput,
  ProfileOutput,
  RlOptions,
  RlStepOutput,
  SamplesOutput,
  ScenarioInput,
  SparseRows,
} from '../../native/index.cjs';

export const native: typeof Binding = require('../../native/index.cjs');
