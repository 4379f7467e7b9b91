/** The `demo` command: the whole story on one scenario, written as a report folder (see ts/demo.ts). */
import type { Command } from 'commander';
import { memoryBudget, memoryBudgetOption } from './options.js';
import * as h from './helpers.js';
import { outputFolder } from '../io/files.js';
import { DEMO_DEFAULTS, demoWorkUnits, loadDemoScenario, runDemo, type DemoSummary } from '../demo.js';
import { demoConclusions } from '../report/conclusions.js';
import { numNonNegative as num, table } from '../report/format.js';
import { Progress } from '../io/progress.js';


const pct = (x: number) => `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;

/** The prefill depths the summary table shows. */
const shownDepths = (s: DemoSummary) => [1, 2, 3, 4].filter((k) => k <= s.horizon.length);

/** The summary table and the lines under it. */
export function renderDemoSummary(s: DemoSummary): string {
  const ks = shownDepths(s);
  const header = ['policy', 'E[H]', 'KL', ...ks.map((k) => `ASR_${k}`), `RAP ASR_${ks[0]}..${ks[ks.length - 1]} (r=${s.parameters.rank})`];
  const rows = s.policies.map((p) => [p.label, num(p.expectedHarm), num(p.kl), ...ks.map((k) => num(p.prefill[k])), ks.map((k) => num(p.rap[k], 3)).join(' ')]);
  const lines = [
    `${s.title} (λ = ${s.parameters.lambda}, μ = ${s.parameters.mu}, γ = ${s.parameters.gamma})`,
    '',
    table(header, rows),
    '',
    `ASR_k: P(harmful | the first k tokens forced from a harmful base response); RAP: rank-assisted prefilling among the policy's top ${s.parameters.rank}.`,
    ...demoConclusions(s, ks[ks.length - 1]),
  ];
  const ls = s.lambdaScaling;
  if (ls) {
    const first = ls.perLambda[0];
    const lastRow = ls.perLambda[ls.perLambda.length - 1];
    lines.push(
      `λ-scaling: D_t/((λ²/2)·I_t) over the ${first.positions} positions with I_t > ${ls.threshold}: ${num(first.min)}…${num(first.max)} at λ = ${first.lambda} ` +
        `(max |ratio − 1| ${pct(first.maxDeviation)}), ${num(lastRow.min)}…${num(lastRow.max)} at λ = ${lastRow.lambda}: ` +
        (ls.deviationAtSmallest !== null && ls.deviationAtSmallest < 0.02 ? 'tends to 1 as λ → 0, as the theory says.' : 'NOT within 2% of 1 at the smallest λ.'),
    );
    if (s.horizon.k < s.horizon.length) lines.push(`beyond the horizon (t > ${s.horizon.k}) the largest D_t over the grid is ${num(ls.beyondHorizonMaxKl)} (0 in theory).`);
  }
  for (const note of s.notes) lines.push(note);
  const html = s.files.find((f) => f.endsWith('index.html'));
  lines.push(
    `${s.interrupted ? 'interrupted: kept what was done in' : 'wrote'} ${s.out}/ in ${s.seconds.toFixed(1)} s: ${html ? `${html} (open it in a browser), ` : ''}summary.json, manifest.json (the commands that reproduce each file)`,
  );
  return lines.join('\n');
}

export function addDemoCommands(program: Command): void {
  program
    .command('demo')
    .description('the whole story on one scenario: exact analysis, standard and deep alignment (trained), attacks and the λ-scaling check, as a report folder')
    .argument('[scenario]', 'a built-in scenario or a scenario JSON file', DEMO_DEFAULTS.scenario)
    .option('--out <dir>', 'report folder', 'harm-horizon-report')
    .option('--seed <S>', 'seed of the PPO batches (and of the random scenario)', h.integer('--seed'), DEMO_DEFAULTS.seed)
    .option('--lambda <L>', 'λ of the objectives (default: the scenario\'s)', h.nonNegative('--lambda'))
    .option('--mu <M>', 'μ of the recovery penalty (default: the scenario\'s)', h.nonNegative('--mu'))
    .option('--gamma <G>', 'γ of the weights w_t = γ^(t−1) (default: the scenario\'s)', h.unitInterval('--gamma'))
    .option('--rank <R>', 'rank-assisted prefilling: the policy\'s top R tokens (capped at V)', h.positiveInteger('--rank'), DEMO_DEFAULTS.rank)
    .option('--ppo-steps <N>', 'PPO optimisation steps', h.positiveInteger('--ppo-steps'), DEMO_DEFAULTS.ppoSteps)
    .option('--ppo-samples <N>', 'PPO responses per batch', h.positiveInteger('--ppo-samples'), DEMO_DEFAULTS.ppoSamples)
    .addOption(memoryBudgetOption())
    .option('--no-html', 'skip the HTML report (index.html)')
    .option('--quiet', 'no progress on stderr')
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      `
Writes into the report folder: index.html (plots under plots/, their data under data/), analyze.json,
a train run folder per trained policy (policy.json, log.jsonl, summary.json), attack-<policy>.json,
lambda-scaling.json, summary.json and manifest.json (the CLI commands that reproduce each file).
Ctrl-C stops after the current step and keeps what is done.

Examples:
  $ harm-horizon demo
  $ harm-horizon demo --out report --json > summary.json
  $ harm-horizon demo examples/scenarios/three-token.json --out three-token-report`,
    )
    .action(async (arg: string, opts: Record<string, any>) => {
      const options = {
        scenario: arg,
        out: opts.out as string,
        seed: opts.seed as number,
        lambda: opts.lambda as number | undefined,
        mu: opts.mu as number | undefined,
        gamma: opts.gamma as number | undefined,
        rank: opts.rank as number,
        ppoSteps: opts.ppoSteps as number,
        ppoSamples: opts.ppoSamples as number,
        html: opts.html !== false,
        memoryBudgetBytes: memoryBudget(opts.memoryBudget).memoryBudgetBytes,
      };
      // Check the input before any work: the scenario (exit 2 naming the field) and the folder.
      const compiled = loadDemoScenario(arg, opts.seed, memoryBudget(opts.memoryBudget));
      const total = demoWorkUnits(compiled, { ...DEMO_DEFAULTS, ...options });
      outputFolder(options.out);
      const tty = process.stderr.isTTY === true;
      const progress = new Progress('demo', total, tty && !opts.quiet);
      let stage = '';
      const sigint = h.stopOnSigint();
      let summary: DemoSummary;
      try {
        summary = await runDemo({ ...options, compiled }, {
          onStage: (label) => {
            stage = label;
            if (!tty && !opts.quiet) process.stderr.write(`demo: ${label}\n`);
          },
          onTick: (units) => progress.tick(units, stage),
          shouldStop: sigint.stopped,
        });
      } finally {
        progress.finish();
        sigint.release();
      }
      if (opts.json) h.json(summary);
      else h.write(renderDemoSummary(summary));
      // 130 as for any Ctrl-C. Set when the process exits: cli.ts's main() overwrites an exit code set
      // here with its own return value.
      if (summary.interrupted) process.once('exit', () => (process.exitCode = 130));
    });
}
