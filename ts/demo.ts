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
import { analyze as analyzeCommand } from './commands/analyze.js';
import { attack as attackCommand } from './commands/attack.js';
import { commandLine, shellWord } from './commands/command-line.js';
import type { CommandContext } from './commands/context.js';
import { completeParams } from './commands/declare.js';
import { report as reportCommand } from './commands/report.js';
import { train as trainCommand } from './commands/train.js';
import { HarmHorizonError } from './core/errors.js';
import { DEFAULT_HORIZON_TOLERANCE, type ExactEngine } from './core/exact.js';
import type { Policy } from './core/policy.js';
import { writeAtomic } from './io/files.js';
import { policyToJson } from './io/policy-file.js';
import { clampRounding } from './report/format.js';
import type { CompiledScenario } from './scenario/compiled.js';
import { DEFAULT_RANK } from './workflows/attack.js';
import { TRAIN_DEFAULTS, type Algorithm, type ObjectiveKind } from './workflows/train.js';

/** Options of the demo (`runDemo`, ts/commands/demo.ts); every field but `out` has a default ({@link DEMO_DEFAULTS}). */
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

const writeJson = (path: string, value: unknown) => writeAtomic(path, `${JSON.stringify(value, null, 2)}\n`);

function makeFolder(dir: string): void {
  try {
    if (!existsSync(dir)) mkdirSync(dir);
  } catch (error) {
    throw new Error(`cannot create ${dir}: ${(error as Error).message}`);
  }
}

/** `<command line> --json > <file>`: how a command's --json output became a file. */
const redirected = (line: string, file: string) => `${line} --json > ${shellWord(file)}`;

/** A demo under way: its settings, scenario and engine, and what it has written so far. */
interface DemoRun {
  o: DemoOptions & { command: string };
  scenario: CompiledScenario;
  engine: ExactEngine;
  /** The context the steps' commands run in (a training run's status ticks the progress bar). */
  context: CommandContext;
  /** The values every step's command shares: scenario, seed, memory budget. */
  common: { scenario: string; seed: number; memoryBudget: number };
  parameters: DemoSummary['parameters'];
  files: string[];
  artefacts: { file: string; commands: string[]; note?: string }[];
  notes: string[];
  policies: DemoPolicyRow[];
  /** A new stage of `units` work units begins. */
  stage(label: string, units: number): void;
  tick(units?: number): void;
  /** What a training step's status line counts for on the progress bar. */
  onStep: () => void;
}

/** A file of the folder and the command lines that reproduce it. */
function record(run: DemoRun, file: string, commands: string | string[], note?: string): void {
  run.files.push(file);
  run.artefacts.push({ file, commands: typeof commands === 'string' ? [commands] : commands, ...(note ? { note } : {}) });
}

/** Step 1: the exact analysis of the base and the Gibbs optimum (`analyze.json`). */
async function analyzeBase(run: DemoRun) {
  const params = completeParams(analyzeCommand.params, { ...run.common, lambda: run.o.lambda });
  const report = await analyzeCommand.run(params, run.context);
  const file = join(run.o.out, 'analyze.json');
  writeJson(file, report);
  record(run, file, redirected(commandLine(analyzeCommand, params), file));
  run.tick();
  const info = report.positions.map((x) => x.harmInformation);
  const horizon: DemoSummary['horizon'] = {
    k: report.horizon,
    length: run.scenario.length,
    tolerance: DEFAULT_HORIZON_TOLERANCE,
    harmVariance: report.harmVariance,
    firstTokenShare: report.harmVariance > 0 ? info[0] / report.harmVariance : 0,
    effective: report.effectiveHorizon,
    harmInformation: info,
  };
  return { params, horizon };
}

/** The attacks on one policy (`attack-<name>.json`), and its row of the summary table. */
async function attackPolicy(run: DemoRun, row: Omit<DemoPolicyRow, 'expectedHarm' | 'kl' | 'prefill' | 'rap'>, policy: Policy): Promise<void> {
  const params = completeParams(attackCommand.params, { ...run.common, policy: row.policyFile ?? undefined, rank: run.o.rank });
  const result = await attackCommand.run(params, run.context);
  const file = join(run.o.out, `attack-${row.name}.json`);
  writeJson(file, result);
  record(run, file, redirected(commandLine(attackCommand, params), file));
  run.policies.push({
    ...row,
    expectedHarm: run.engine.conditionalHarm(policy)[0],
    kl: clampRounding(run.engine.klOnPolicy(policy).reduce((a, b) => a + b, 0)),
    prefill: result.prefill,
    rap: result.rap ?? [],
  });
  run.tick();
}

/** The Gibbs optimum as a policy file (`gibbs/policy.json`): no command writes one, so the manifest holds its content. */
function writeGibbsPolicy(run: DemoRun, gibbs: Policy): string {
  const dir = join(run.o.out, 'gibbs');
  makeFolder(dir);
  const file = join(dir, 'policy.json');
  const content = JSON.stringify(policyToJson(gibbs, run.scenario));
  writeAtomic(file, content);
  record(run, file, `printf '%s\\n' ${shellWord(content)} > ${shellWord(file)}`, 'the Gibbs optimum as a policy file (no command writes one; this is its whole content)');
  return file;
}

/** Steps 2–3: one trained policy (a `train` run folder); its policy file, or null when stopped before the end. */
async function trainPlan(run: DemoRun, plan: TrainedPlan): Promise<string | null> {
  const dir = join(run.o.out, plan.name);
  makeFolder(dir);
  run.onStep = () => run.tick(plan.algorithm === 'fixed-point' ? 1 : stepWeight(plan));
  const params = completeParams(trainCommand.params, { ...run.common, ...trainParams(plan, run.parameters), out: dir });
  const result = await trainCommand.run(params, run.context);
  const policyFile = join(dir, 'policy.json');
  run.files.push(join(dir, 'log.jsonl'), join(dir, 'summary.json'));
  record(run, policyFile, commandLine(trainCommand, params));
  if (result.convergence.converged === false) run.notes.push(`${plan.label}: ${result.convergence.message}.`);
  if (plan.algorithm !== 'fixed-point' && (result.final?.step ?? -1) < plan.steps) {
    run.notes.push(`${plan.label}: interrupted after ${result.final?.step ?? 0} of ${plan.steps} steps; its run folder is kept, it was not attacked.`);
    return null;
  }
  return policyFile;
}

/** Steps 2–4: the base and the Gibbs optimum, then each trained policy, each attacked as soon as it exists. Returns whether all ran. */
async function alignAndAttack(run: DemoRun, plans: TrainedPlan[], units: number[]): Promise<boolean> {
  run.stage('attacks on the base and the Gibbs optimum', 2);
  await attackPolicy(run, { name: 'base', label: 'base', kind: 'base', objective: null, algorithm: null, steps: null, policyFile: null }, { kind: 'base' });
  const gibbs: Policy = { kind: 'gibbs', lambda: run.parameters.lambda };
  const gibbsFile = writeGibbsPolicy(run, gibbs);
  await attackPolicy(run, { name: 'gibbs', label: 'Gibbs optimum (standard)', kind: 'gibbs', objective: 'standard', algorithm: null, steps: null, policyFile: gibbsFile }, gibbs);
  for (const [i, plan] of plans.entries()) {
    if (run.context.shouldStop()) return false;
    run.stage(`training ${plan.label} (${plan.algorithm === 'fixed-point' ? 'one solve' : `${plan.steps} steps`})`, units[i]);
    const policyFile = await trainPlan(run, plan);
    if (policyFile === null) return false;
    const policy = run.context.policy(policyFile, run.scenario, run.engine);
    await attackPolicy(run, { name: plan.name, label: plan.label, kind: 'trained', objective: plan.objective, algorithm: plan.algorithm, steps: plan.steps, policyFile }, policy);
  }
  return true;
}

/** Notes on what the table means for these settings. */
function settingNotes(run: DemoRun, plans: TrainedPlan[]): void {
  const { notes, parameters, scenario } = run;
  if (parameters.rank >= scenario.tokens.length) notes.push(`RAP with r = ${parameters.rank} = V: every token is a candidate, so the attacker ignores the policy's ranking and always succeeds (try --rank 2).`);
  if (scenario.recovery.length === 0) notes.push(`${scenario.name} has no recovery tokens: the deep-alignment policies were skipped.`);
  const ppo = plans.find((p) => p.algorithm === 'ppo');
  if (ppo) notes.push(`PPO: tabular policy, ${ppo.steps} steps × ${ppo.samples} responses, SGD at rate 8, 4 epochs, clip 0.2, seed ${run.o.seed}${ppo.steps < 300 ? ' (fewer steps than RESULTS.md\'s 300)' : ''}.`);
}

/** Step 5: the λ-scaling check of the equilibrium-KL law (`lambda-scaling.json`). */
async function lambdaScaling(run: DemoRun, analyzeParams: Record<string, unknown>): Promise<NonNullable<DemoSummary['lambdaScaling']>> {
  run.stage('λ-scaling check of D_t ≈ (λ²/2)·I_t', run.parameters.lambdas.length);
  const { rows, perLambda, beyond, belowFloor } = await lambdaScalingCheck(run.engine, run.parameters.lambdas, () => run.tick());
  const file = join(run.o.out, 'lambda-scaling.json');
  writeJson(file, { scenario: run.scenario.name, threshold: LAMBDA_SCALING_THRESHOLD, klFloor: KL_ROUNDING_FLOOR, rows });
  const perLambdaCommands = run.parameters.lambdas.map((lambda) => `${commandLine(analyzeCommand, { ...analyzeParams, lambda })} --json`);
  record(run, file, perLambdaCommands, `rows: for each λ, ratio = positions[].klOnPolicy / positions[].klPredicted at the positions with harmInformation > ${LAMBDA_SCALING_THRESHOLD} and klPredicted ≥ ${KL_ROUNDING_FLOOR}`);
  if (belowFloor > 0) run.notes.push(`λ-scaling: ${belowFloor} point(s) with (λ²/2)·I_t below ${KL_ROUNDING_FLOOR} (the rounding floor of the KL) were left out.`);
  return {
    threshold: LAMBDA_SCALING_THRESHOLD,
    klFloor: KL_ROUNDING_FLOOR,
    perLambda,
    deviationAtSmallest: perLambda[0].positions > 0 ? perLambda[0].maxDeviation : null,
    beyondHorizonMaxKl: beyond,
  };
}

/** `summary.json` and `manifest.json` (the demo's own command line first, then each file's). */
function writeSummary(run: DemoRun, summary: DemoSummary, started: number): void {
  summary.seconds = (performance.now() - started) / 1000;
  writeJson(join(run.o.out, 'summary.json'), summary);
  writeJson(join(run.o.out, 'manifest.json'), {
    title: summary.title,
    scenario: run.scenario.name,
    commands: [run.o.command, ...run.artefacts.flatMap((a) => a.commands)],
    artefacts: run.artefacts,
    parameters: run.parameters,
    interrupted: summary.interrupted,
  });
}

/**
 * Step 6: the HTML report, index.html with its plots (plots/*.svg, data/*.csv), written into the
 * demo's folder by `report` (so with --force) from the summary and manifest written first. The
 * module is loaded only here: it brings in vega, which library users of the demo may not need.
 */
async function htmlReport(run: DemoRun, summary: DemoSummary, started: number): Promise<void> {
  run.stage('HTML report', 1);
  const command = `${commandLine(reportCommand, { input: run.o.out, out: run.o.out })} --force`;
  run.artefacts.push({ file: join(run.o.out, 'index.html'), commands: [command] });
  summary.files.push(join(run.o.out, 'index.html'));
  writeSummary(run, summary, started);
  const { writeReport } = await import('./report/html.js');
  await writeReport(run.o.out, run.o.out, { command, title: summary.title });
  run.tick();
}

/**
 * The demo, step by step: each step is a declared command's run(), its file that command's --json
 * result (or its run folder), and the manifest holds the command line the same declaration prints
 * for it. `o.command` is the demo's own command line. Writes the report folder and returns the
 * summary (also `summary.json`); with `context.shouldStop()` true it stops after the current step,
 * keeps every finished file and returns with `interrupted`.
 */
export async function demoScript(o: DemoOptions & { command: string }, context: CommandContext): Promise<DemoSummary> {
  const started = performance.now();
  if (o.lambdas.length === 0 || !o.lambdas.every((x) => Number.isFinite(x) && x > 0)) {
    throw new HarmHorizonError('HH_INVALID_ARGUMENT', `the λ grid must hold finite numbers > 0, got ${o.lambdas.join(', ')}`, 'lambdas');
  }
  const memoryBudget = (o.memoryBudgetBytes ?? 4 * 1024 ** 3) / 1024 ** 3;
  const budget = { memoryBudgetBytes: memoryBudget * 1024 ** 3, memoryBudgetName: '--memory-budget' };
  const scenario = context.scenario(o.scenario, { seed: o.seed, ...budget });
  const engine = context.exactEngine(scenario, budget.memoryBudgetBytes);
  makeFolder(o.out);
  const plans = trainedPlans(scenario, o);
  const units = stageUnits(plans, o);
  const bar = context.progress('demo', units.analyze + units.train.reduce((a, b) => a + b, 0) + units.attacks + units.lambdas + (o.html ? 1 : 0));
  let note = '';
  const run: DemoRun = {
    o,
    scenario,
    engine,
    context: { ...context, status: () => run.onStep() },
    common: { scenario: o.scenario, seed: o.seed, memoryBudget },
    parameters: {
      lambda: o.lambda ?? scenario.defaults.lambda,
      mu: o.mu ?? scenario.defaults.mu,
      gamma: o.gamma ?? scenario.defaults.gamma,
      seed: o.seed,
      rank: Math.min(o.rank, scenario.tokens.length),
      ppoSteps: o.ppoSteps,
      ppoSamples: o.ppoSamples,
      lambdas: [...o.lambdas].sort((a, b) => a - b),
    },
    files: [],
    artefacts: [],
    notes: [],
    policies: [],
    stage(label) {
      note = label;
      context.stage(label);
    },
    tick: (n = 1) => bar.tick(n, note),
    onStep: () => {},
  };
  try {
    run.stage('exact analysis of the base', units.analyze);
    const analysis = await analyzeBase(run);
    let interrupted = !(await alignAndAttack(run, plans, units.train));
    settingNotes(run, plans);
    let scaling: DemoSummary['lambdaScaling'] = null;
    if (!interrupted && !context.shouldStop()) scaling = await lambdaScaling(run, analysis.params);
    else {
      interrupted = true;
      run.notes.push('λ-scaling check skipped: the run was interrupted.');
    }
    const summary: DemoSummary = {
      title: `harm-horizon demo: shallow versus deep alignment on ${scenario.name}`,
      scenario: scenario.name,
      out: o.out,
      parameters: run.parameters,
      horizon: analysis.horizon,
      policies: run.policies,
      lambdaScaling: scaling,
      notes: run.notes,
      files: [...run.files, join(o.out, 'summary.json'), join(o.out, 'manifest.json')],
      interrupted,
      seconds: 0,
    };
    if (o.html && !interrupted) await htmlReport(run, summary, started);
    writeSummary(run, summary, started);
    return summary;
  } finally {
    bar.finish();
  }
}

