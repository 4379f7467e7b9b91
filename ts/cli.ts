#!/usr/bin/env node
/**
 * The harm-horizon command line. Exit codes: 0 success, 1 a failure of the run, 2 bad usage or bad
 * input (the message names the bad field).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { renderAnalyzeReport } from './report/analyze-text.js';
import { HarmHorizonError } from './core/errors.js';
import { DEFAULT_HORIZON_TOLERANCE, ExactEngine } from './core/exact.js';
import type { CompiledScenario } from './scenario/compiled.js';
import { estimateReport, renderEstimateReport } from './estimate-report.js';
import { DEFAULT_TILT, type GradientEstimator, type Proposal } from './core/montecarlo.js';
import { BASE } from './core/policy.js';
import { loadPolicy } from './io/policy-file.js';
import { analyzeReport, DEFAULT_EFFECTIVE_FRACTION } from './report/analysis.js';
import { addDemoCommands } from './commands-demo.js';
import { addLogCommands } from './commands-logs.js';
import { addReportCommands } from './commands-report.js';
import { addSweepCommands } from './commands-sweep.js';
import { addTrainCommands, tryPrefixTree } from './commands-train.js';
import { resolveScenario } from './scenario/resolve.js';
import { memoryBudget, memoryBudgetOption } from './commands-options.js';
import { claimOutputFolder } from './io/files.js';
import { writeStdout, writeStdoutJson } from './io/stdout.js';
import { builtinNames, builtinScenario, compileScenario, estimateScenarioSize, ScenarioError, scenarioToJson, type Scenario } from './scenario/index.js';

/**
 * Codes of bad input (exit 2), among them an --out the user cannot write, one that holds another
 * run's results, or one another process is writing; everything else (HH_WRITE_FAILED, HH_PANIC, …)
 * is a failure of the run (exit 1).
 */
const BAD_INPUT_CODES = new Set([
  'HH_OUTPUT_UNWRITABLE',
  'HH_OUTPUT_OCCUPIED',
  'HH_LOCKED',
  'HH_SCENARIO_INVALID',
  'HH_POLICY_INVALID',
  'HH_FILE_NOT_FOUND',
  'HH_INVALID_ARGUMENT',
  'HH_INVALID_SPEC',
  'HH_STATE_SPACE_TOO_LARGE',
  'HH_OUT_OF_MEMORY',
  'HH_LOG_INVALID',
]);

/** Codes of an exact engine that does not fit (the budget or the machine): Monte Carlo takes over. */
const DOES_NOT_FIT = ['HH_STATE_SPACE_TOO_LARGE', 'HH_OUT_OF_MEMORY'];

/** Commands that write an --out folder: it is locked for the run and refused when occupied (unless --force). */
const OUT_FOLDER_COMMANDS = ['train', 'demo', 'report', 'rollouts'];

function unitFraction(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (value.trim() === '' || !(x > 0 && x <= 1)) throw new InvalidArgumentError(`${name} must be in (0, 1].`);
    return x;
  };
}

function nonNegative(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x) || x < 0) throw new InvalidArgumentError(`${name} must be a finite number ≥ 0.`);
    return x;
  };
}

function positiveInteger(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (!Number.isSafeInteger(x) || x < 1) throw new InvalidArgumentError(`${name} must be a whole number ≥ 1.`);
    return x;
  };
}

function oneOf<T extends string>(name: string, choices: T[]) {
  return (value: string) => {
    if (!choices.includes(value as T)) throw new InvalidArgumentError(`${name} must be one of ${choices.join(', ')}.`);
    return value as T;
  };
}

/**
 * The exact engine when the state space and a T × S × V policy table fit the budget and the
 * machine, else null (Monte Carlo only).
 */
function tryExactEngine(scenario: CompiledScenario, memoryBudgetBytes: number): ExactEngine | null {
  try {
    return new ExactEngine(scenario, { memoryBudgetBytes, policyTables: true });
  } catch (error) {
    if (error instanceof HarmHorizonError && DOES_NOT_FIT.includes(error.code)) return null;
    throw error;
  }
}

function integer(name: string) {
  return (value: string) => {
    const x = Number(value);
    if (!Number.isSafeInteger(x) || x < 0) throw new InvalidArgumentError(`${name} must be a whole number ≥ 0.`);
    return x;
  };
}

/** κ of the tilted proposal: any finite number with |κ| ≤ 700. */
function tilt(value: string) {
  const x = Number(value);
  if (value.trim() === '' || !Number.isFinite(x) || Math.abs(x) > 700) throw new InvalidArgumentError('--tilt must be a finite number with |κ| ≤ 700.');
  return x;
}

const seedOption = () => new Option('--seed <S>', 'seed of the random scenario').argParser(integer('--seed'));

const write = writeStdout;
const json = writeStdoutJson;

export function buildProgram(): Command {
  const program = new Command('harm-horizon')
    .description('Shallow versus deep safety alignment, computable: the harm martingale, harm information and per-position gradients.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    // Help and version go through the checked writer too (`--help > /dev/full` is exit 1, one line).
    .configureOutput({ writeOut: writeStdout });

  program
    .command('analyze')
    .description('exact analysis of a scenario: harm information I_t, horizon, gradients, Gibbs-optimum KL and prefilling success')
    .argument('<scenario>', `a built-in scenario (${builtinNames().join(', ')}) or a scenario JSON file`)
    .option('--lambda <L>', 'alignment strength λ of λ·E[H] + KL (default: the scenario\'s, 5 for refusal, 1 otherwise)', nonNegative('--lambda'))
    .option('--tolerance <X>', 'relative tolerance of the harm horizon (I_t ≤ X·Var H counts as 0)', nonNegative('--tolerance'), DEFAULT_HORIZON_TOLERANCE)
    .option('--effective-fraction <F>', 'share of Var H the effective horizon resolves', unitFraction('--effective-fraction'), DEFAULT_EFFECTIVE_FRACTION)
    .option('--json', 'print one JSON object instead of the table')
    .addOption(seedOption())
    .addOption(memoryBudgetOption())
    .addHelpText(
      'after',
      `
Examples:
  $ harm-horizon analyze refusal
  $ harm-horizon analyze refusal --lambda 0.5 --json
  $ harm-horizon analyze examples/scenarios/three-token.json --json
  $ harm-horizon analyze random --seed 7
  $ harm-horizon analyze "random(seed=1,V=16,n=2,T=64,D=40)"`,
    )
    .option('--policy <file>', 'compare this policy (a trained one) with the base instead of the Gibbs optimum')
    .action(async (arg: string, opts: { lambda?: number; tolerance: number; effectiveFraction: number; json?: boolean; seed?: number; memoryBudget: number; policy?: string }) => {
      const budget = memoryBudget(opts.memoryBudget);
      const compiled = compileScenario(resolveScenario(arg, { seed: opts.seed, ...budget }), budget);
      const lambda = opts.lambda ?? compiled.defaults.lambda;
      const engine = new ExactEngine(compiled, budget);
      const analysis = await engine.analyzeAsync(lambda, opts.tolerance);
      if (opts.policy) {
        // The "aligned" columns describe the given policy rather than the Gibbs optimum.
        const policy = loadPolicy(opts.policy, compiled, engine.numStates);
        const prefixes = engine.onHarmfulPrefixes(policy);
        analysis.alignedExpectedHarm = engine.conditionalHarm(policy)[0];
        analysis.klOnPolicy = engine.klOnPolicy(policy);
        analysis.klTeacherForced = prefixes.klTeacherForced;
        analysis.asrAligned = prefixes.asr;
      }
      const report = { ...analyzeReport(compiled, analysis, engine.numStates, opts.tolerance, opts.effectiveFraction), aligned: opts.policy ?? `gibbs(λ=${lambda})` };
      if (opts.json) json(report);
      else write(renderAnalyzeReport(report));
    });

  program
    .command('estimate')
    .description('Monte Carlo estimates (with standard errors) of E[H], I_t, per-position KL and gradients, beside the exact values')
    .argument('<scenario>', `a built-in scenario (${builtinNames().join(', ')}) or a scenario JSON file`)
    .option('--policy <file>', 'a policy file (default: the base model)')
    .requiredOption('--samples <N>', 'number of sampled responses', positiveInteger('--samples'))
    .option('--rollouts <M>', 'estimate h_t by M nested rollouts per prefix (default: exact h_t when the exact engine applies, else 16 rollouts)', positiveInteger('--rollouts'))
    .option('--estimator <name>', 'gradient estimator: reinforce, leave-one-out or innovation', oneOf('--estimator', ['reinforce', 'leave-one-out', 'innovation']), 'innovation')
    .option('--seed <S>', 'seed of the samples (and of the random scenario)', integer('--seed'), 0)
    .option(
      '--proposal <name>',
      'draw responses from the policy; tilted: from q ∝ P·e^{κH} (exact with the exact engine, else per token), reweighted by P/q (no gradients then); information: from the mixture of the policy and the zero-variance proposals q_t ∝ P·Δ_t² of each I_t (needs the exact engine), reweighted by P/q ≤ |S| + 1',
      oneOf('--proposal', ['policy', 'tilted', 'information']),
      'policy',
    )
    .option('--tilt <κ>', `κ of the tilted proposal (default ${DEFAULT_TILT}; negative tilts away from harm)`, tilt)
    .option('--json', 'print one JSON object instead of the table')
    .addOption(memoryBudgetOption())
    .addHelpText(
      'after',
      `
Examples:
  $ harm-horizon estimate refusal --samples 20000
  $ harm-horizon estimate horizon --samples 4096 --rollouts 8 --json
  $ harm-horizon estimate refusal --policy run/policy.json --samples 10000 --estimator reinforce
  $ harm-horizon estimate refusal --samples 20000 --proposal tilted --tilt 3
  $ harm-horizon estimate refusal --samples 20000 --proposal information`,
    )
    .action(async (arg: string, opts: { policy?: string; samples: number; rollouts?: number; estimator: GradientEstimator; seed: number; proposal: Proposal; tilt?: number; json?: boolean; memoryBudget: number }) => {
      if (opts.tilt !== undefined && opts.proposal !== 'tilted') throw new HarmHorizonError('HH_INVALID_ARGUMENT', '--tilt needs --proposal tilted');
      const budget = memoryBudget(opts.memoryBudget);
      const compiled = compileScenario(resolveScenario(arg, { seed: opts.seed, ...budget, samplingOnly: true }), { memoryBudgetBytes: Infinity });
      let exact = tryExactEngine(compiled, budget.memoryBudgetBytes);
      const policy = opts.policy ? loadPolicy(opts.policy, compiled, exact?.numStates) : BASE;
      if (policy.kind === 'transformer') exact = tryPrefixTree(compiled, budget.memoryBudgetBytes);
      const request = { samples: opts.samples, seed: opts.seed, rollouts: opts.rollouts, estimator: opts.estimator, proposal: opts.proposal, tilt: opts.tilt };
      const report = await estimateReport(compiled, policy, request, exact);
      if (opts.json) json(report);
      else write(renderEstimateReport(report));
    });

  const helpers = { nonNegative, positiveInteger, integer, oneOf, json, write, tryExactEngine };
  addTrainCommands(program, helpers);
  addSweepCommands(program, helpers);
  addReportCommands(program, helpers);
  addDemoCommands(program, helpers);
  addLogCommands(program, helpers);
  for (const command of program.commands.filter((c) => OUT_FOLDER_COMMANDS.includes(c.name()))) {
    command
      .option('--force', 'write over the results another run left in --out')
      .hook('preAction', (c) => {
        const opts = c.opts<{ out: string; force?: boolean }>();
        claimOutputFolder(opts.out, { force: opts.force });
      });
  }

  const scenario = program.command('scenario').description('list, show and validate scenarios');
  scenario
    .command('list')
    .description('list the built-in scenarios')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const rows = builtinNames().map((name) => {
        const s = builtinScenario(name);
        return { name, tokens: s.tokens.length, length: s.length, description: s.description ?? '' };
      });
      if (opts.json) json(rows);
      else write(rows.map((r) => `${r.name.padEnd(10)} V=${r.tokens}, T=${r.length}  ${r.description}`).join('\n'));
    });
  scenario
    .command('show')
    .description('print a scenario in the scenario file format')
    .argument('<scenario>', 'a built-in scenario or a scenario JSON file')
    .option('--json', 'print only the JSON file (default also prints a summary to stderr on a terminal)')
    .addOption(seedOption())
    .addHelpText('after', '\nExamples:\n  $ harm-horizon scenario show horizon --json > horizon.json\n  $ harm-horizon scenario show random --seed 3 --json')
    .action((arg: string, opts: { json?: boolean; seed?: number }) => {
      const s = resolveScenario(arg, { seed: opts.seed });
      json(scenarioToJson(s));
      if (!opts.json && process.stderr.isTTY) {
        const size = estimateScenarioSize(s);
        process.stderr.write(`${s.name}: V = ${s.tokens.length}, T = ${s.length}, at most ${size.stateBound} exact states\n`);
      }
    });
  scenario
    .command('validate')
    .description('check a scenario file; exit 0 if valid, 2 with the bad field named if not')
    .argument('<file>', 'a scenario JSON file')
    .option('--json', 'print the result as JSON')
    .addOption(memoryBudgetOption())
    .action((file: string, opts: { json?: boolean; memoryBudget: number }) => {
      const budget = memoryBudget(opts.memoryBudget);
      let result: { s: Scenario; states: number };
      try {
        const s = resolveScenario(file, budget);
        result = { s, states: new ExactEngine(compileScenario(s, budget), budget).numStates };
      } catch (error) {
        // With --json, the verdict is on stdout too; the message still goes to stderr, and the exit code is 2.
        if (opts.json && error instanceof HarmHorizonError && BAD_INPUT_CODES.has(error.code)) {
          const message = error instanceof ScenarioError ? error.reason : error.message;
          json({ valid: false, errors: [{ path: error.field ?? '', message }] });
        }
        throw error;
      }
      const { s, states } = result;
      if (opts.json) json({ valid: true, name: s.name, tokens: s.tokens.length, length: s.length, states });
      else write(`${file}: valid (${s.name}: V = ${s.tokens.length}, T = ${s.length}, ${states} exact states)`);
    });

  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  for (const command of program.commands.flatMap((c) => [c, ...c.commands])) command.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
    }
    if (error instanceof HarmHorizonError) {
      process.stderr.write(`harm-horizon: ${error.message}\n`);
      return BAD_INPUT_CODES.has(error.code) ? 2 : 1;
    }
    process.stderr.write(`harm-horizon: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}

main(process.argv).then((code) => {
  // An action may have set its own code (130 after Ctrl-C); keep it.
  process.exitCode ||= code;
});
