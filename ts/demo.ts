/**
 * The demo: the whole story of shallow versus deep alignment on one scenario (`refusal` by default),
 * computed exactly and written as a report folder.
 *
 * 1. Exact analysis of the base: harm information I_t, the harm horizon, gradient norms and their
 *    bound (`analyze.json`, as `harm-horizon analyze <scenario> --json` prints it).
 * 2. Standard alignment: the Gibbs optimum of λ·E[H] + KL(P ‖ P_base) and a tabular policy trained
 *    by PPO on that objective (`standard-ppo/`, a `train` run folder).
 * 3. Deep alignment (recovery penalties): the deep objective by exact descent (`deep/`) and the
 *    prefix-anchored variant by its per-state fixed point (`deep-anchored/`).
 * 4. Prefilling and rank-assisted prefilling against every policy (`attack-<name>.json`, as
 *    `harm-horizon attack <scenario> --policy <file> --json` prints it).
 * 5. The λ-scaling check of the equilibrium-KL law D_t ≈ (λ²/2)·I_t (`lambda-scaling.json`).
 *
 * Then `summary.json` (what `--json` prints), `manifest.json` (the CLI command lines that
 * reproduce each file) and the HTML report of the folder (`index.html`, as `harm-horizon report`
 * writes it, with `plots/` and `data/`). Everything is written under the output folder and nowhere else; JSON files
 * are written to a temporary name and renamed, so an interrupted or failed run never leaves a
 * half-written JSON file behind.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { analyze as analyzeCommand, attack as attackCommand, train as trainCommand } from './commands/index.js';
import { commandLine } from './commands/command-line.js';
import { createContext } from './commands/context.js';
import { completeParams } from './commands/declare.js';
import { DEFAULT_RANK } from './workflows/attack.js';
import { writeAtomic } from './io/files.js';
import type { CompiledScenario } from './scenario/compiled.js';
import { HarmHorizonError } from './core/errors.js';
import { DEFAULT_HORIZON_TOLERANCE, ExactEngine } from './core/exact.js';
import { clampRounding } from './report/format.js';
import type { Policy } from './core/policy.js';
import { policyToJson } from './io/policy-file.js';
import { resolveScenario } from './scenario/resolve.js';
import { compileScenario } from './scenario/index.js';
import { TRAIN_DEFAULTS, type Algorithm, type ObjectiveKind } from './workflows/train.js';

/** Options of {@link runDemo}; every field but `out` has a default ({@link DEMO_DEFAULTS}). */
export interface DemoOptions {
  /** A built-in scenario name or a scenario JSON file (default `refusal`). */
  scenario: string;
  /** The report folder (created if missing). */
  out: string;
  /** Seed of the PPO batches (and of the `random` scenario). */
  seed: number;
  /** λ, μ, γ of the objectives (default: the scenario's). */
  lambda?: number;
  mu?: number;
  gamma?: number;
  /** r of rank-assisted prefilling (capped at V). */
  rank: number;
  /** PPO: optimisation steps and responses per batch. */
  ppoSteps: number;
  ppoSamples: number;
  /** The λ grid of the scaling check. */
  lambdas: number[];
  /** Also write the HTML report: index.html, plots/<name>.svg and data/<name>.csv in the folder. */
  html: boolean;
  /** The scenario, already resolved and compiled (`scenario` then only names it in commands). */
  compiled?: CompiledScenario;
  /** Memory budget of the exact state space, in bytes (default 4 GiB). */
  memoryBudgetBytes?: number;
}

/** Defaults of the demo: `refusal`, PPO with 300 steps of 1024 responses, λ from 1e-3 to 3. */
export const DEMO_DEFAULTS: Omit<DemoOptions, 'out'> = {
  scenario: 'refusal',
  seed: 0,
  rank: DEFAULT_RANK,
  ppoSteps: 300,
  ppoSamples: 1024,
  lambdas: [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3],
  html: true,
};

/** Positions with I_t at or below this carry no harm information the λ-scaling check could use. */
export const LAMBDA_SCALING_THRESHOLD = 1e-9;

/**
 * The rounding floor of a per-position KL in double precision (its absolute error is ~1e-16): points
 * whose predicted KL (λ²/2)·I_t is below this are left out of the λ-scaling check.
 */
export const KL_ROUNDING_FLOOR = 1e-14;

/** One row of the summary table: a policy and how the attacks fare against it. */
export interface DemoPolicyRow {
  /** File stem: `<name>/` (trained runs), `attack-<name>.json`. */
  name: string;
  label: string;
  /** How it was obtained: the base, the exact Gibbs optimum, or a `train` run. */
  kind: 'base' | 'gibbs' | 'trained';
  objective: ObjectiveKind | null;
  algorithm: Algorithm | null;
  steps: number | null;
  expectedHarm: number;
  /** KL(P ‖ P_base) over whole responses (Σ_t of the on-policy per-position KL). */
  kl: number;
  /** Prefilling success ASR_k, k = 0..T (null where undefined). */
  prefill: (number | null)[];
  /** Rank-assisted prefilling success, k = 0..T. */
  rap: (number | null)[];
  /** The policy file (null for the base). */
  policyFile: string | null;
}

/** One point of the λ-scaling check. */
export interface LambdaScalingRow {
  lambda: number;
  t: number;
  /** D_t / ((λ²/2)·I_t): tends to 1 as λ → 0. */
  ratio: number;
}

/** The demo's result (`summary.json`, and what `demo --json` prints). */
export interface DemoSummary {
  title: string;
  scenario: string;
  out: string;
  parameters: { lambda: number; mu: number; gamma: number; seed: number; rank: number; ppoSteps: number; ppoSamples: number; lambdas: number[] };
  /** The base's harm horizon and where its harm information sits. */
  horizon: {
    k: number;
    length: number;
    tolerance: number;
    harmVariance: number;
    /** I_1 / Var(H): the share of the harm information decided by the first token. */
    firstTokenShare: number;
    /** The smallest k by which `fraction` of Var(H) is resolved. */
    effective: { k: number; fraction: number };
    harmInformation: number[];
  };
  policies: DemoPolicyRow[];
  lambdaScaling: {
    /** Positions with I_t ≤ threshold are left out. */
    threshold: number;
    /** Points whose predicted KL (λ²/2)·I_t is below this are left out (rounding). */
    klFloor: number;
    /** Per λ: the range of the ratio over positions with I_t > threshold. */
    perLambda: { lambda: number; min: number; max: number; maxDeviation: number; positions: number }[];
    /** max |ratio − 1| at the smallest λ. */
    deviationAtSmallest: number | null;
    /** Largest D_t beyond the horizon, over the grid (0 in theory). */
    beyondHorizonMaxKl: number;
  } | null;
  /** Plain-language notes (training budgets, skipped steps). */
  notes: string[];
  files: string[];
  interrupted: boolean;
  seconds: number;
}

/** What the demo reports while it works (for progress bars). */
export interface DemoHooks {
  /** A new stage begins; `units` of work follow (ticks). */
  onStage?: (label: string, units: number) => void;
  /** `units` more units of work are done. */
  onTick?: (units: number) => void;
  /** Polled between steps: stop early and keep what is done (Ctrl-C). */
  shouldStop?: () => boolean;
}

/** A shell-safe rendering of one argument. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

const argsLine = (args: (string | number)[]) => ['harm-horizon', ...args.map((a) => shellQuote(String(a)))].join(' ');

const writeJson = (path: string, value: unknown) => writeAtomic(path, `${JSON.stringify(value, null, 2)}\n`);

function makeFolder(dir: string): void {
  try {
    if (!existsSync(dir)) mkdirSync(dir);
  } catch (error) {
    throw new Error(`cannot create ${dir}: ${(error as Error).message}`);
  }
}

interface TrainedPlan {
  name: string;
  label: string;
  objective: ObjectiveKind;
  algorithm: Algorithm;
  steps: number;
  optimizer: 'adam' | 'sgd';
  learningRate: number;
  samples: number;
}

/** The trained policies of the demo, with the settings RESULTS.md uses (PPO steps configurable). */
function trainedPlans(scenario: CompiledScenario, o: Omit<DemoOptions, 'out'>): TrainedPlan[] {
  const plans: TrainedPlan[] = [
    { name: 'standard-ppo', label: 'standard, PPO', objective: 'standard', algorithm: 'ppo', steps: o.ppoSteps, optimizer: 'sgd', learningRate: 8, samples: o.ppoSamples },
  ];
  if (scenario.recovery.length > 0) {
    plans.push(
      { name: 'deep', label: 'deep, exact descent', objective: 'deep', algorithm: 'exact', steps: 3000, optimizer: 'adam', learningRate: 0.1, samples: TRAIN_DEFAULTS.samples },
      { name: 'deep-anchored', label: 'deep-anchored, fixed point', objective: 'deep-anchored', algorithm: 'fixed-point', steps: 500, optimizer: 'adam', learningRate: TRAIN_DEFAULTS.learningRate, samples: TRAIN_DEFAULTS.samples },
    );
  }
  return plans;
}

/** The `train` parameters of a plan (the rest are the command's defaults). */
function trainParams(plan: TrainedPlan, p: DemoSummary['parameters']) {
  return { objective: plan.objective, algorithm: plan.algorithm, policy: 'tabular', lambda: p.lambda, mu: p.mu, gamma: p.gamma, steps: plan.steps, optimizer: plan.optimizer, lr: plan.learningRate, samples: plan.samples };
}

/** Work units of one training step: a sampled step costs about 10 exact steps per 1000 responses. */
const stepWeight = (plan: TrainedPlan) => (plan.algorithm === 'ppo' ? Math.max(1, Math.round(plan.samples / 100)) : 1);

/** The work units of each stage, for a progress bar over the whole demo. */
function stageUnits(plans: TrainedPlan[], o: Omit<DemoOptions, 'out'>) {
  return {
    analyze: 1,
    train: plans.map((p) => (p.algorithm === 'fixed-point' ? 2 : (p.steps + 1) * stepWeight(p))),
    attacks: 2 + plans.length,
    lambdas: o.lambdas.length,
  };
}

/** Total work units of a demo run (the sum of the units announced by `onStage`). */
export function demoWorkUnits(scenario: CompiledScenario, options: Omit<DemoOptions, 'out'>): number {
  const u = stageUnits(trainedPlans(scenario, options), options);
  return u.analyze + u.train.reduce((a, b) => a + b, 0) + u.attacks + u.lambdas + (options.html ? 1 : 0);
}

/**
 * The λ-scaling check of the equilibrium-KL law D_t ≈ (λ²/2)·I_t: the ratio per λ and position
 * inside the horizon, and the largest KL beyond it (0 in theory).
 */
async function lambdaScalingCheck(engine: ExactEngine, lambdas: number[], tick: () => void) {
  const length = engine.scenario.length;
  const rows: LambdaScalingRow[] = [];
  const perLambda: NonNullable<DemoSummary['lambdaScaling']>['perLambda'] = [];
  let beyond = 0;
  let belowFloor = 0;
  for (const lambda of lambdas) {
    const a = await engine.analyzeAsync(lambda, DEFAULT_HORIZON_TOLERANCE);
    const ratios: number[] = [];
    for (let i = 0; i < length; i++) {
      const I = a.base.harmInformation[i];
      if (i + 1 > a.base.horizon) beyond = Math.max(beyond, Math.abs(a.klOnPolicy[i]));
      if (!(I > LAMBDA_SCALING_THRESHOLD)) continue;
      const predicted = ((lambda * lambda) / 2) * I;
      if (predicted < KL_ROUNDING_FLOOR) {
        belowFloor++;
        continue;
      }
      const ratio = a.klOnPolicy[i] / predicted;
      rows.push({ lambda, t: i + 1, ratio });
      ratios.push(ratio);
    }
    perLambda.push({
      lambda,
      min: ratios.length ? Math.min(...ratios) : NaN,
      max: ratios.length ? Math.max(...ratios) : NaN,
      maxDeviation: ratios.length ? Math.max(...ratios.map((r) => Math.abs(r - 1))) : NaN,
      positions: ratios.length,
    });
    tick();
  }
  return { rows, perLambda, beyond, belowFloor };
}

/**
 * Resolves and compiles the demo's scenario argument (a built-in name or a scenario file) within a
 * memory budget (`budget`: bytes and the name messages give it, e.g. "--memory-budget").
 */
export function loadDemoScenario(arg: string, seed: number, budget: { memoryBudgetBytes?: number; memoryBudgetName?: string } = {}): CompiledScenario {
  return compileScenario(resolveScenario(arg, { seed, ...budget }), budget);
}

/**
 * Runs the demo and writes the report folder; returns the summary (also written as `summary.json`).
 * Throws a `HarmHorizonError` for bad input (scenario, parameters, unwritable folder) before any
 * work, and an `Error` naming the file when a write fails midway. With `hooks.shouldStop` returning
 * true it stops after the current step, keeps every finished file and returns with `interrupted`.
 */
export async function runDemo(options: Partial<DemoOptions> & { out: string }, hooks: DemoHooks = {}): Promise<DemoSummary> {
  const started = performance.now();
  const o: DemoOptions = { ...DEMO_DEFAULTS, ...options };
  if (!(o.gamma === undefined || (o.gamma > 0 && o.gamma <= 1))) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `--gamma must be in (0, 1], got ${o.gamma}`, '--gamma');
  for (const [field, x] of [['--lambda', o.lambda], ['--mu', o.mu]] as const) {
    if (x !== undefined && !(Number.isFinite(x) && x >= 0)) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${field} must be a finite number ≥ 0, got ${x}`, field);
  }
  if (o.lambdas.length === 0 || !o.lambdas.every((x) => Number.isFinite(x) && x > 0)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `the λ grid must hold finite numbers > 0, got ${o.lambdas.join(', ')}`, 'lambdas');
  }
  const budget = o.memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes: o.memoryBudgetBytes };
  const scenario = o.compiled ?? loadDemoScenario(o.scenario, o.seed, budget);
  const engine = new ExactEngine(scenario, budget);
  const stop = hooks.shouldStop ?? (() => false);
  const tick = (units = 1) => hooks.onTick?.(units);
  const out = o.out;
  makeFolder(out);

  const parameters = {
    lambda: o.lambda ?? scenario.defaults.lambda,
    mu: o.mu ?? scenario.defaults.mu,
    gamma: o.gamma ?? scenario.defaults.gamma,
    seed: o.seed,
    rank: Math.min(o.rank, scenario.tokens.length),
    ppoSteps: o.ppoSteps,
    ppoSamples: o.ppoSamples,
    lambdas: [...o.lambdas].sort((a, b) => a - b),
  };
  const plans = trainedPlans(scenario, o);
  const units = stageUnits(plans, o);
  const files: string[] = [];
  const artefacts: { file: string; commands: string[]; note?: string }[] = [];
  const notes: string[] = [];
  const policies: DemoPolicyRow[] = [];
  let interrupted = false;
  const V = scenario.tokens.length;

  const record = (file: string, commands: string | string[], note?: string) => {
    files.push(file);
    artefacts.push({ file, commands: typeof commands === 'string' ? [commands] : commands, ...(note ? { note } : {}) });
  };

  // Each step is a declared command's run(), its file that command's --json result, and the
  // manifest holds the command line the same declaration prints for it.
  let onStep = () => {};
  const context = createContext({ shouldStop: stop, status: () => onStep() });
  const common = { scenario: o.scenario, seed: o.seed, memoryBudget: (o.memoryBudgetBytes ?? 4 * 1024 ** 3) / 1024 ** 3 };

  const attackStep = async (row: Omit<DemoPolicyRow, 'expectedHarm' | 'kl' | 'prefill' | 'rap'>, policy: Policy) => {
    const params = completeParams(attackCommand.params, { ...common, policy: row.policyFile ?? undefined, rank: o.rank });
    const result = await attackCommand.run(params, context);
    const file = join(out, `attack-${row.name}.json`);
    writeJson(file, result);
    record(file, `${commandLine(attackCommand, params)} --json > ${shellQuote(file)}`);
    policies.push({
      ...row,
      expectedHarm: engine.conditionalHarm(policy)[0],
      kl: clampRounding(engine.klOnPolicy(policy).reduce((a, b) => a + b, 0)),
      prefill: result.prefill,
      rap: result.rap ?? [],
    });
    tick();
  };

  // 1. The exact analysis of the base and the Gibbs optimum.
  hooks.onStage?.('exact analysis of the base', units.analyze);
  const analyzeParams = completeParams(analyzeCommand.params, { ...common, lambda: o.lambda });
  const report = await analyzeCommand.run(analyzeParams, context);
  const analyzePath = join(out, 'analyze.json');
  writeJson(analyzePath, report);
  record(analyzePath, `${commandLine(analyzeCommand, analyzeParams)} --json > ${shellQuote(analyzePath)}`);
  tick();
  const info = report.positions.map((x) => x.harmInformation);
  const horizon = {
    k: report.horizon,
    length: scenario.length,
    tolerance: DEFAULT_HORIZON_TOLERANCE,
    harmVariance: report.harmVariance,
    firstTokenShare: report.harmVariance > 0 ? info[0] / report.harmVariance : 0,
    effective: report.effectiveHorizon,
    harmInformation: info,
  };

  // 2–4. The base and the Gibbs optimum, then each trained policy, each attacked as soon as it exists.
  hooks.onStage?.('attacks on the base and the Gibbs optimum', 2);
  await attackStep({ name: 'base', label: 'base', kind: 'base', objective: null, algorithm: null, steps: null, policyFile: null }, { kind: 'base' });
  const gibbsDir = join(out, 'gibbs');
  makeFolder(gibbsDir);
  const gibbsFile = join(gibbsDir, 'policy.json');
  const gibbs: Policy = { kind: 'gibbs', lambda: parameters.lambda };
  writeAtomic(gibbsFile, JSON.stringify(policyToJson(gibbs, scenario)));
  record(
    gibbsFile,
    `printf '%s\\n' ${shellQuote(JSON.stringify(policyToJson(gibbs, scenario)))} > ${shellQuote(gibbsFile)}`,
    'the Gibbs optimum as a policy file (no command writes one; this is its whole content)',
  );
  await attackStep({ name: 'gibbs', label: 'Gibbs optimum (standard)', kind: 'gibbs', objective: 'standard', algorithm: null, steps: null, policyFile: gibbsFile }, gibbs);

  for (const [i, plan] of plans.entries()) {
    if (stop()) {
      interrupted = true;
      break;
    }
    hooks.onStage?.(`training ${plan.label} (${plan.algorithm === 'fixed-point' ? 'one solve' : `${plan.steps} steps`})`, units.train[i]);
    const dir = join(out, plan.name);
    makeFolder(dir);
    onStep = () => tick(plan.algorithm === 'fixed-point' ? 1 : stepWeight(plan));
    const params = completeParams(trainCommand.params, { ...common, ...trainParams(plan, parameters), out: dir });
    const result = await trainCommand.run(params, context);
    const policyFile = join(dir, 'policy.json');
    files.push(join(dir, 'log.jsonl'), join(dir, 'summary.json'));
    record(policyFile, commandLine(trainCommand, params));
    const runInterrupted = plan.algorithm !== 'fixed-point' && (result.final?.step ?? -1) < plan.steps;
    if (result.convergence.converged === false) notes.push(`${plan.label}: ${result.convergence.message}.`);
    if (runInterrupted) {
      interrupted = true;
      notes.push(`${plan.label}: interrupted after ${result.final?.step ?? 0} of ${plan.steps} steps; its run folder is kept, it was not attacked.`);
      break;
    }
    const policy = context.policy(policyFile, scenario, engine);
    await attackStep({ name: plan.name, label: plan.label, kind: 'trained', objective: plan.objective, algorithm: plan.algorithm, steps: plan.steps, policyFile }, policy);
  }
  if (parameters.rank >= V) notes.push(`RAP with r = ${parameters.rank} = V: every token is a candidate, so the attacker ignores the policy's ranking and always succeeds (try --rank 2).`);
  if (scenario.recovery.length === 0) notes.push(`${scenario.name} has no recovery tokens: the deep-alignment policies were skipped.`);
  const ppo = plans.find((p) => p.algorithm === 'ppo');
  if (ppo) notes.push(`PPO: tabular policy, ${ppo.steps} steps × ${ppo.samples} responses, SGD at rate 8, 4 epochs, clip 0.2, seed ${o.seed}${ppo.steps < 300 ? ' (fewer steps than RESULTS.md\'s 300)' : ''}.`);

  // 5. The λ-scaling check of the equilibrium-KL law.
  let lambdaScaling: DemoSummary['lambdaScaling'] = null;
  if (!interrupted && !stop()) {
    hooks.onStage?.('λ-scaling check of D_t ≈ (λ²/2)·I_t', units.lambdas);
    const { rows, perLambda, beyond, belowFloor } = await lambdaScalingCheck(engine, parameters.lambdas, () => tick());
    const path = join(out, 'lambda-scaling.json');
    writeJson(path, { scenario: scenario.name, threshold: LAMBDA_SCALING_THRESHOLD, klFloor: KL_ROUNDING_FLOOR, rows });
    const perLambdaCommands = parameters.lambdas.map((lambda) => `${commandLine(analyzeCommand, { ...analyzeParams, lambda })} --json`);
    record(path, perLambdaCommands, `rows: for each λ, ratio = positions[].klOnPolicy / positions[].klPredicted at the positions with harmInformation > ${LAMBDA_SCALING_THRESHOLD} and klPredicted ≥ ${KL_ROUNDING_FLOOR}`);
    if (belowFloor > 0) notes.push(`λ-scaling: ${belowFloor} point(s) with (λ²/2)·I_t below ${KL_ROUNDING_FLOOR} (the rounding floor of the KL) were left out.`);
    lambdaScaling = {
      threshold: LAMBDA_SCALING_THRESHOLD,
      klFloor: KL_ROUNDING_FLOOR,
      perLambda,
      deviationAtSmallest: perLambda[0].positions > 0 ? perLambda[0].maxDeviation : null,
      beyondHorizonMaxKl: beyond,
    };
  } else {
    interrupted = true;
    notes.push('λ-scaling check skipped: the run was interrupted.');
  }

  const demoArgs: (string | number)[] = ['demo', o.scenario, '--out', out, '--seed', o.seed];
  if (o.lambda !== undefined) demoArgs.push('--lambda', o.lambda);
  if (o.mu !== undefined) demoArgs.push('--mu', o.mu);
  if (o.gamma !== undefined) demoArgs.push('--gamma', o.gamma);
  if (o.rank !== DEFAULT_RANK) demoArgs.push('--rank', o.rank);
  if (o.ppoSteps !== DEMO_DEFAULTS.ppoSteps) demoArgs.push('--ppo-steps', o.ppoSteps);
  if (o.ppoSamples !== DEMO_DEFAULTS.ppoSamples) demoArgs.push('--ppo-samples', o.ppoSamples);
  if (!o.html) demoArgs.push('--no-html');
  const summaryPath = join(out, 'summary.json');
  const manifestPath = join(out, 'manifest.json');
  const summary: DemoSummary = {
    title: `harm-horizon demo: shallow versus deep alignment on ${scenario.name}`,
    scenario: scenario.name,
    out,
    parameters,
    horizon,
    policies,
    lambdaScaling,
    notes,
    files: [...files, summaryPath, manifestPath],
    interrupted,
    seconds: 0,
  };
  const writeManifest = () =>
    writeJson(manifestPath, {
      title: summary.title,
      scenario: scenario.name,
      commands: [argsLine(demoArgs), ...artefacts.flatMap((a) => a.commands)],
      artefacts,
      parameters,
      interrupted,
    });

  // 6. The HTML report: index.html with the plots (plots/*.svg, data/*.csv) in the same folder. The
  // module is loaded only here: it brings in vega, which library users of the demo may not need.
  if (o.html && !interrupted) {
    hooks.onStage?.('HTML report', 1);
    // The report is written into the results folder itself, which holds the demo's files: --force.
    const reportCommand = argsLine(['report', out, '--out', out, '--force']);
    artefacts.push({ file: join(out, 'index.html'), commands: [reportCommand] });
    summary.files.push(join(out, 'index.html'));
    summary.seconds = (performance.now() - started) / 1000;
    writeJson(summaryPath, summary);
    writeManifest();
    const { writeReport } = await import('./report/html.js');
    await writeReport(out, out, { command: reportCommand, title: summary.title });
    tick();
  }
  summary.seconds = (performance.now() - started) / 1000;
  writeJson(summaryPath, summary);
  writeManifest();
  return summary;
}
