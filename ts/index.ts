/**
 * harm-horizon: the theory of shallow versus deep safety alignment, computable.
 *
 * Load or build a scenario (`builtinScenario`, `loadScenarioFile`, `parseScenario`), compile it
 * (`compileScenario`), and analyse it exactly with an `ExactEngine`.
 */
export type { CompiledScenario } from './scenario/compiled.js';
export { HarmHorizonError } from './core/errors.js';
export type { AbortOptions } from './core/abort.js';
export {
  BASE,
  DEFAULT_HORIZON_TOLERANCE,
  ExactEngine,
  type Analysis,
  type EngineOptions,
  type HarmProfile,
  type Policy,
  type ProfileOptions,
} from './core/exact.js';
export { analyzeReport, DEFAULT_EFFECTIVE_FRACTION, effectiveHorizon, type AnalyzeReport, type PositionRow, type PrefillRow } from './report/analysis.js';
export { resolveScenario } from './scenario/resolve.js';
export {
  DEFAULT_MEMORY_BUDGET_BYTES,
  ScenarioError,
  builtinNames,
  builtinScenario,
  compileScenario,
  estimateScenarioSize,
  loadScenarioFile,
  parseScenario,
  parseScenarioText,
  randomScenario,
  scenarioToJson,
  type HarmAutomaton,
  type RandomScenarioOptions,
  type Scenario,
  type ScenarioDefaults,
  type ScenarioOptions,
} from './scenario/index.js';
export {
  DEFAULT_TILT,
  MonteCarlo,
  NO_TOKEN,
  type Estimate,
  type EstimateOptions,
  type Estimates,
  type GradientEstimator,
  type Proposal,
  type InformationProposalSummary,
  type SampleBatch,
  type ScalarEstimate,
  type SampleOptions,
} from './core/montecarlo.js';
export { LazyTabular } from './core/lazy-tabular.js';
export { DEFAULT_MLP, fitMlpToBase, fitMlpToBaseAsync, initMlp, mlpLogits, mlpNumParams, type MlpShape } from './core/policy.js';
export { POLICY_FORMAT, loadPolicy, policyFromJson, policyToJson, savePolicy, type PolicyFile } from './io/policy-file.js';
export { estimateReport, type EstimatePosition, type EstimateReport } from './estimate-report.js';
export { DEFAULT_RANK, asTabular, fineTuneAttack, fineTuneAttackAsync, prefillAttack, prefillAttackAsync, rankAssistedAttack, rankAssistedAttackAsync, rankAssistedAttacker, sampledPrefillAttack, sampledPrefillAttackAsync, type FineTuneOptions, type FineTuneResult, type SampledPrefillOptions, type SampledPrefillResult, type FineTuneStep } from './workflows/attack.js';
export { CONVERGENCE_THRESHOLD, DEFAULT_MIX, TRAIN_DEFAULTS, convergence, evaluateObjective, evaluateObjectiveAsync, initialPolicy, train, type Algorithm, type Convergence, type ObjectiveKind, type ObjectiveOptions, type TrainOptions, type TrainRecord } from './workflows/train.js';
export { DEMO_DEFAULTS, type DemoOptions, type DemoSummary } from './demo.js';
export { runDemo, type DemoHooks } from './commands/demo.js';
// The commands, as the CLI and the sweep run them: completeParams(command.params, {...}) then
// command.run(params, createContext()), which returns what `harm-horizon <command> --json` prints.
export { analyze as analyzeCommand, attack as attackCommand, estimate as estimateCommand, train as trainCommand, type AttackResult, type TrainResult } from './commands/index.js';
export { createContext, type CommandContext, type ContextOptions } from './commands/context.js';
export { completeParams, type CommandDeclaration, type Param, type ValuesOf } from './commands/declare.js';
export { commandLine } from './commands/command-line.js';
export type { ResolveOptions } from './scenario/resolve.js';
export type { ScenarioErrorCode, ScenarioSizeEstimate } from './scenario/index.js';
export type { EstimateRequest } from './estimate-report.js';
export {
  LOG_FORMAT,
  LOG_VERSION,
  LogValidator,
  parseLog,
  readLog,
  type LogHeader,
  type LogModel,
  type LogPrefill,
  type LogPrompt,
  type LogRecord,
  type LogRollout,
  type LogSample,
  type RolloutLog,
} from './logs/format.js';
export { profileLog, passAt, type LogProfile, type ProfileOptions as LogProfileOptions } from './logs/profile.js';
export { toyRolloutLog, type ToyRolloutOptions } from './logs/toy-runner.js';
export { convert as convertProviderLog, importLog, type Provider } from './logs/import.js';
export { keywordJudge, REFUSAL_PHRASES } from './logs/judge.js';
export { clusterBootstrap, clusterBootstrapAsync, fitKlLaw, klFullRows, klLowerBoundRows, klTokenEstimates, type BootstrapInput, type BootstrapResult, type LawFit } from './core/log-stats.js';
export { ggufRolloutLog, type GgufOptions } from './logs/gguf-runner.js';
export { END_OF_RESPONSE, Transformer, type TransformerShape } from './core/transformer.js';
