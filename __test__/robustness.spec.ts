/**
 * Robustness of the command line: bad values, bad scenario files, unknown options and unwritable or
 * full output folders end with exit 2 (bad input) or 1 (the run failed), a message naming the field
 * or file, and never a stack trace; files already written stay valid.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, type CliResult } from './helpers/cli.js';
import { smallDisk } from './helpers/small-disk.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-robust-'));
const threeToken = JSON.parse(readFileSync(new URL('../examples/scenarios/three-token.json', import.meta.url), 'utf8'));

function scenarioFile(name: string, change: (s: any) => void): string {
  const s = structuredClone(threeToken);
  change(s);
  const path = join(scratch, `${name}.json`);
  writeFileSync(path, JSON.stringify(s));
  return path;
}

const lengthZero = scenarioFile('length-zero', (s) => (s.length = 0));
const badSum = scenarioFile('bad-sum', (s) => (s.base['<bos>'] = [0.5, 0.3, 0.1]));
const negative = scenarioFile('negative', (s) => (s.base['<bos>'] = [-0.1, 0.6, 0.5]));
const harmTwo = scenarioFile('harm-two', (s) => (s.harm.values.HARM = 2));
const syntax = join(scratch, 'syntax.json');
writeFileSync(syntax, '{"name": "x",, }');

// The CLI runs in child processes, a few at a time (ava runs the tests of a file concurrently).
let running = 0;
const waiting: (() => void)[] = [];
async function runCli(args: string[], cwd?: string): Promise<CliResult> {
  while (running >= 4) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });
  } finally {
    running--;
    waiting.shift()?.();
  }
}

const STACK = /\n\s+at |node:internal|\.js:\d+:\d+/;

/** Exit 2 (or `code`), the pattern in stderr, no stack trace, nothing on stdout. */
function expectFailure(t: ExecutionContext, r: CliResult, pattern: RegExp, code = 2) {
  t.is(r.status, code, `exit code; stderr: ${r.stderr}`);
  t.regex(r.stderr, pattern);
  t.notRegex(r.stderr, STACK, 'no stack trace');
  t.is(r.stdout, '');
}

const out = (name: string) => join(scratch, 'out', name);

// Out-of-range values name the option.
for (const [args, field] of [
  [['analyze', 'refusal', '--lambda', '-1'], '--lambda'],
  [['analyze', 'refusal', '--lambda', 'nan'], '--lambda'],
  [['analyze', 'refusal', '--lambda', '1e999'], '--lambda'],
  [['analyze', 'refusal', '--tolerance', '-1'], '--tolerance'],
  [['analyze', 'refusal', '--memory-budget', '-1'], '--memory-budget'],
  [['train', 'refusal', '--gamma', '0', '--out', out('gamma0')], '--gamma'],
  [['train', 'refusal', '--gamma', '1.5', '--out', out('gamma15')], '--gamma'],
  [['train', 'refusal', '--steps', '0', '--out', out('steps0')], '--steps'],
  [['train', 'refusal', '--steps', '1.5', '--out', out('steps15')], '--steps'],
  [['train', 'refusal', '--objective', 'bogus', '--out', out('bogus')], '--objective'],
  [['estimate', 'refusal', '--samples', '0'], '--samples'],
  [['attack', 'refusal', '--rank', '0'], '--rank'],
  [['demo', '--gamma', '0', '--out', out('demo-gamma')], '--gamma'],
  [['demo', '--gamma', '1.5', '--out', out('demo-gamma')], '--gamma'],
  [['demo', '--lambda', '-3', '--out', out('demo-lambda')], '--lambda'],
  [['demo', '--rank', '0', '--out', out('demo-rank')], '--rank'],
  [['demo', '--seed', '-1', '--out', out('demo-seed')], '--seed'],
  [['demo', '--ppo-steps', '0', '--out', out('demo-ppo')], '--ppo-steps'],
] as [string[], string][]) {
  test(`${args.slice(0, 4).join(' ')}: exit 2 naming ${field}`, async (t) => {
    expectFailure(t, await runCli([...args]), new RegExp(field));
    if (args.includes('--out')) t.false(existsSync(args[args.indexOf('--out') + 1]), 'no output folder for bad input');
  });
}

// Bad scenario files are refused by every command that takes one, naming the field.
const commands: [string, (file: string) => string[]][] = [
  ['demo', (f) => ['demo', f, '--out', out('demo-bad')]],
  ['analyze', (f) => ['analyze', f]],
  ['train', (f) => ['train', f, '--out', out('train-bad')]],
  ['estimate', (f) => ['estimate', f, '--samples', '10']],
  ['attack', (f) => ['attack', f]],
  ['scenario validate', (f) => ['scenario', 'validate', f]],
];
for (const [file, what, pattern] of [
  [lengthZero, 'length 0', /length: .*got 0/],
  [badSum, 'a row not summing to 1', /base\["<bos>"\]: row must sum to 1.*0\.9/],
  [negative, 'a negative probability', /base\["<bos>"\]\[0\]: .*≥ 0/],
  [harmTwo, 'a harm value of 2', /harm\.values\.HARM: .*\[0, 1\]/],
  [syntax, 'invalid JSON', /invalid JSON at line 1, column 14/],
] as const) {
  for (const [name, args] of commands) {
    test(`${name} refuses a scenario file with ${what}`, async (t) => {
      expectFailure(t, await runCli(args(file)), pattern);
      t.false(existsSync(out(`${name}-bad`)), 'no output folder for bad input');
    });
  }
}

test('a missing scenario file is exit 2 naming it', async (t) => {
  for (const cmd of ['analyze', 'attack']) expectFailure(t, await runCli([cmd, join(scratch, 'nope.json')]), /nope\.json/);
  expectFailure(t, await runCli(['demo', join(scratch, 'nope.json'), '--out', out('nope')]), /nope\.json/);
});

test('a built-in name is not shadowed by a folder of that name in the working directory', async (t) => {
  const cwd = join(scratch, 'shadow');
  mkdirSync(join(cwd, 'horizon'), { recursive: true });
  const r = await runCli(['analyze', 'horizon', '--json'], cwd);
  t.is(r.status, 0, r.stderr);
});

for (const args of [
  ['analyze', 'refusal', '--bogus'],
  ['estimate', 'refusal', '--samples', '5', '--bogus'],
  ['train', 'refusal', '--out', out('unknown'), '--bogus'],
  ['attack', 'refusal', '--bogus'],
  ['demo', '--bogus'],
  ['demo', 'refusal', 'extra'],
  ['scenario', 'list', '--bogus'],
  ['bogus-command'],
]) {
  test(`unknown options and arguments: ${args.join(' ')} exits 2`, async (t) => {
    expectFailure(t, await runCli(args), /unknown option '--bogus'|too many arguments|unknown command/);
  });
}

test('an attack with a policy built for another scenario names the field', async (t) => {
  const policy = join(scratch, 'refusal-policy.json');
  writeFileSync(policy, JSON.stringify({ format: 'harm-horizon-policy', version: 1, kind: 'gibbs', scenario: { name: 'refusal', vocab: 5, length: 16 }, lambda: 5 }));
  expectFailure(t, await runCli(['attack', 'examples/scenarios/three-token.json', '--policy', policy]), /scenario\.vocab/);
});

// Unwritable output folders: exit 2 naming the folder, before any work.
for (const dir of ['/proc/x/y', join(scratch, 'a-file')]) {
  writeFileSync(join(scratch, 'a-file'), 'x');
  test(`train and demo refuse the unwritable --out ${dir}`, async (t) => {
    expectFailure(t, await runCli(['train', 'refusal', '--steps', '5', '--out', dir]), new RegExp(`cannot write to the output folder ${dir}`));
    expectFailure(t, await runCli(['demo', '--out', dir]), new RegExp(`cannot write to the output folder ${dir}`));
  });
}

/** Every line of a JSON-lines file parses (the last one included). */
function validJsonLines(t: ExecutionContext, path: string) {
  const text = readFileSync(path, 'utf8');
  t.true(text === '' || text.endsWith('\n'), `${path} ends with a whole line`);
  const lines = text.split('\n').filter((l) => l !== '');
  for (const [i, line] of lines.entries()) {
    try {
      JSON.parse(line);
    } catch {
      return t.fail(`${path}: line ${i + 1} is not JSON (${line.length} characters)`);
    }
  }
  t.pass();
}

for (const [name, args] of [
  ['train', (dir: string) => ['train', 'refusal', '--steps', '2000', '--out', join(dir, 'run')]],
  ['demo', (dir: string) => ['demo', '--out', join(dir, 'run')]],
] as const) {
  test(`${name} on a full disk: exit 1, a clear message naming the file, valid files left`, async (t) => {
    const disk = smallDisk(join(scratch, `disk-${name}`));
    if (!disk) {
      t.log('skipped: needs root to mount a small tmpfs');
      return t.pass();
    }
    try {
      const r = await runCli(args(disk.dir));
      t.is(r.status, 1, r.stderr);
      t.regex(r.stderr, /no space left on device/);
      t.regex(r.stderr, new RegExp(`${disk.dir}/run/\\S+`), 'names the file that could not be written');
      t.notRegex(r.stderr, STACK);
      const logs = name === 'train' ? [join(disk.dir, 'run', 'log.jsonl')] : ['standard-ppo', 'deep', 'deep-anchored'].map((d) => join(disk.dir, 'run', d, 'log.jsonl'));
      for (const log of logs.filter(existsSync)) validJsonLines(t, log);
      for (const json of ['analyze.json', 'summary.json', 'attack-base.json'].map((f) => join(disk.dir, 'run', f)).filter(existsSync)) {
        t.notThrows(() => JSON.parse(readFileSync(json, 'utf8')), json);
      }
    } finally {
      disk.release();
    }
  });
}

test('estimate: Ctrl-C aborts the computation at once, writes nothing on stdout and exits 130', async (t) => {
  // Minutes of work: 2·10^6 responses of T = 40, each prefix's h_t from 64 rollouts.
  const args = [CLI, 'estimate', 'random(seed=3,V=6,n=2,T=40,D=6,eos=true)', '--samples', '2000000', '--rollouts', '64', '--json'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  // Interrupt once the sampling has started (the stage line on stderr).
  for (let i = 0; i < 600 && !stderr.includes('sampling 2000000 responses'); i++) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  t.is(await exited, 130, stderr);
  t.regex(stderr, /estimate stopped by Ctrl-C before it finished; nothing was written/);
  t.notRegex(stderr, STACK);
  t.is(stdout, '');
});

test('train: Ctrl-C stops after the current step, keeps a valid run folder and exits 130', async (t) => {
  const dir = out('train-interrupted');
  const child = spawn(process.execPath, [CLI, 'train', 'refusal', '--steps', '100000', '--out', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  // Interrupt once the log has a few lines.
  const log = join(dir, 'log.jsonl');
  for (let i = 0; i < 600 && !(existsSync(log) && statSync(log).size > 10_000); i++) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  const code = await exited;
  t.is(code, 130, stderr);
  t.notRegex(stderr, STACK);
  validJsonLines(t, log);
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  t.true(summary.interrupted);
  t.true(existsSync(join(dir, 'policy.json')));
});
