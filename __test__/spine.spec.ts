/**
 * One declaration per command: for the same parameters, the CLI's --json output, a sweep cell's
 * result and the demo's step are the same JSON (they all call the declaration's run()); every CLI
 * command is built from a declaration, and every declared parameter of a cell's command is a sweep
 * parameter.
 */
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../ts/cli/program.js';
import { cellCommands, commands } from '../ts/commands/index.js';
import { number } from '../ts/commands/declare.js';
import { CellRunner, parseSweep, sweepParameters } from '../ts/sweep/index.js';
import { runCli } from './helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-spine-'));
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

/** The CLI's --json output (exit 0 required). */
function cli(args: string[]): unknown {
  const r = runCli([...args, '--json']);
  if (r.status !== 0) throw new Error(`harm-horizon ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The result of the one cell of a sweep with these parameters, run in-process as a sweep worker runs it. */
async function cell(command: 'analyze' | 'estimate' | 'train' | 'attack', scenario: string, params: Record<string, unknown>): Promise<unknown> {
  const sweep = parseSweep({ command, scenario, list: [params] }, 'spine test', scratch);
  const runner = new CellRunner(command, sweep.scenarios, sweep.baseDir);
  // Through JSON, as the results file holds it.
  return JSON.parse(JSON.stringify(await runner.run(sweep.cells[0])));
}

test('analyze: the CLI and a sweep cell give the same JSON', async (t) => {
  t.deepEqual(await cell('analyze', 'horizon', { lambda: 0.7, tolerance: 1e-9 }), cli(['analyze', 'horizon', '--lambda', '0.7', '--tolerance', '1e-9']));
});

test('estimate: the CLI and a sweep cell give the same JSON (same seed, same samples)', async (t) => {
  const fromCell = (await cell('estimate', 'refusal', { samples: 3000, seed: 5, estimator: 'leave-one-out' })) as { samples: number };
  t.is(fromCell.samples, 3000);
  t.deepEqual(fromCell, cli(['estimate', 'refusal', '--samples', '3000', '--seed', '5', '--estimator', 'leave-one-out']));
});

test('train: the CLI and a sweep cell give the same JSON', async (t) => {
  const out = join(scratch, 'train-deep');
  const fromCli = cli(['train', 'refusal', '--objective', 'deep', '--steps', '12', '--seed', '2', '--eval-every', '12', '--out', out]) as { final: { step: number } };
  t.is(fromCli.final.step, 12);
  t.deepEqual(await cell('train', 'refusal', { objective: 'deep', steps: 12, seed: 2 }), fromCli);
  // The run folder's summary is the same result, with the command line and the files beside it.
  const { command, files, ...summary } = readJson(join(out, 'summary.json'));
  t.deepEqual(summary, fromCli);
  t.regex(command, /^harm-horizon train refusal --objective deep --steps 12 --seed 2 --eval-every 12 --out /);
  t.deepEqual(Object.keys(files), ['policy', 'log']);
});

test('attack: the CLI and a sweep cell give the same JSON (curves indexed by k)', async (t) => {
  const fromCli = cli(['attack', 'horizon', '--rank', '2', '--finetune-steps', '2', '--lambda', '1']) as { prefill: unknown[]; policy: string; finetune: { steps: unknown[] } };
  t.is(fromCli.policy, 'gibbs(λ=1)');
  t.true(fromCli.prefill.every((x) => x === null || typeof x === 'number'));
  t.is(fromCli.finetune.steps.length, 3, 'steps 0, 1, 2');
  t.deepEqual(await cell('attack', 'horizon', { rank: 2, finetuneSteps: 2, lambda: 1, seed: 0 }), fromCli);
});

test('demo: each step is the JSON its reproducing command prints, and a sweep cell of the same parameters', async (t) => {
  const out = join(scratch, 'demo');
  const r = runCli(['demo', 'refusal', '--out', out, '--ppo-steps', '4', '--ppo-samples', '64', '--no-html', '--quiet', '--json']);
  t.is(r.status, 0, r.stderr);
  const manifest = readJson(join(out, 'manifest.json')) as { commands: string[]; artefacts: { file: string; commands: string[] }[] };
  const words = (line: string) => {
    t.notRegex(line, /'/, 'no quoted words in these command lines');
    return line.split(' ').slice(1);
  };
  // The demo's own line: the options given, in the declaration's order, without the defaults.
  t.deepEqual(words(manifest.commands[0]), ['demo', 'refusal', '--out', out, '--ppo-steps', '4', '--ppo-samples', '64', '--no-html', '--quiet']);
  // analyze.json and attack-*.json: `<command> --json > <file>`.
  const redirected = manifest.artefacts.filter((a) => /\/(analyze|attack-[\w-]+)\.json$/.test(a.file));
  t.is(redirected.length, 1 + 2 + 3, 'analyze, the base, the Gibbs optimum and three trained policies');
  for (const a of redirected) {
    const [line, target] = a.commands[0].split(' > ');
    t.is(target, a.file);
    const args = words(line);
    t.is(args.pop(), '--json');
    t.deepEqual(readJson(a.file), cli(args), a.commands[0]);
  }
  // The base's attack is a sweep cell too, and so is the analysis.
  t.deepEqual(await cell('attack', 'refusal', { seed: 0 }), readJson(join(out, 'attack-base.json')));
  t.deepEqual(await cell('analyze', 'refusal', {}), readJson(join(out, 'analyze.json')));
  // Each training run: its command, run again into a new folder, prints the run's summary.
  for (const name of ['standard-ppo', 'deep', 'deep-anchored']) {
    const { command, files: _, ...summary } = readJson(join(out, name, 'summary.json'));
    const args = words(command);
    args[args.indexOf('--out') + 1] = join(scratch, `again-${name}`);
    t.deepEqual(cli(args), summary, command);
  }
});

/** The leaf commands of a commander program by their words (`scenario list`). */
function leaves(command: Command, prefix: string[] = []): [string, Command][] {
  return command.commands.flatMap((c): [string, Command][] => (c.commands.length > 0 ? leaves(c, [...prefix, c.name()]) : [[[...prefix, c.name()].join(' '), c]]));
}

test('every CLI command is built from its declaration: the same commands, arguments and flags, all in its --help', (t) => {
  const built = new Map(leaves(buildProgram()));
  t.deepEqual([...built.keys()], commands.map((d) => d.name));
  for (const d of commands) {
    const command = built.get(d.name)!;
    const params = Object.values(d.params);
    t.deepEqual(command.registeredArguments.map((a) => a.name()), params.filter((p) => p.positional).map((p) => p.flag), `${d.name}: arguments`);
    const added = [...(d.writesOutFolder ? ['--force'] : []), '--json'];
    t.deepEqual(command.options.map((o) => o.long), [...params.filter((p) => !p.positional).map((p) => p.flag), ...added], `${d.name}: options`);
    const help = command.helpInformation();
    for (const p of params) t.true(help.includes(p.flag) && help.includes(p.help.slice(0, 20)), `${d.name} --help shows ${p.flag}`);
  }
});

test('a newly declared parameter is a sweep parameter, with the declaration\'s check and default', (t) => {
  const before = sweepParameters(cellCommands.analyze.params);
  const after = sweepParameters({ ...cellCommands.analyze.params, gain: number('--gain <G>', 'a new knob', { above: 0, max: 2, default: 1 }) });
  t.deepEqual(Object.keys(after), [...Object.keys(before), 'gain']);
  t.like(after.gain, { kind: { type: 'number', above: 0, max: 2, text: 'a number in (0, 2]' }, doc: 'a new knob (default 1)' });
  // The scenario, seed and memory budget are the sweep's own fields; cells write no run folders.
  for (const key of ['scenario', 'seed', 'memoryBudget']) t.false(key in after, key);
  t.false('out' in sweepParameters(cellCommands.train.params));
});

test('a declared parameter the sweep never listed by hand is sweepable: the cell gives the CLI\'s JSON; a bad value is refused naming its field', async (t) => {
  const fromCell = (await cell('analyze', 'horizon', { effectiveFraction: 0.5 })) as { effectiveHorizon: { fraction: number } };
  t.is(fromCell.effectiveHorizon.fraction, 0.5);
  t.deepEqual(fromCell, cli(['analyze', 'horizon', '--effective-fraction', '0.5']));
  const tilted = { command: 'estimate', scenario: 'refusal', fixed: { samples: 10, proposal: 'tilted' } };
  t.throws(() => parseSweep({ ...tilted, grid: { tilt: [1, 800] } }, 'spine test', scratch), { message: /grid\.tilt\[1\]: tilt must be a finite number with \|x\| ≤ 700, got 800/ });
  t.throws(() => parseSweep({ ...tilted, grid: { finetuneOptimizer: ['adam'] } }, 'spine test', scratch), { message: /unknown parameter "finetuneOptimizer" for estimate/ });
  t.is(parseSweep({ command: 'attack', scenario: 'refusal', grid: { finetuneOptimizer: ['sgd', 'adamw'] } }, 'spine test', scratch).cells.length, 2);
});
