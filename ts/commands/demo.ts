/** `demo`: the whole story on one scenario, written as a report folder (the script is ts/demo.ts). */
import { DEMO_DEFAULTS, demoScript, type DemoOptions, type DemoSummary } from '../demo.js';
import { demoConclusions } from '../report/conclusions.js';
import { numNonNegative as num, table } from '../report/format.js';
import { commandLine } from './command-line.js';
import { createContext, SILENT, type CommandContext } from './context.js';
import { completeParams, declareCommand, flag, integer, string } from './declare.js';
import { budgetOf, memoryBudget, objectiveWeights, seed } from './options.js';

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

export const demo = declareCommand({
  name: 'demo',
  onStop: 'after-step',
  description: 'the whole story on one scenario: exact analysis, standard and deep alignment (trained), attacks and the λ-scaling check, as a report folder',
  params: {
    scenario: string('scenario', 'a built-in scenario or a scenario JSON file', { positional: true, default: DEMO_DEFAULTS.scenario }),
    out: string('--out <dir>', 'report folder', { default: 'harm-horizon-report' }),
    seed: seed('seed of the PPO batches (and of the random scenario)', DEMO_DEFAULTS.seed),
    ...objectiveWeights(),
    rank: integer('--rank <R>', 'rank-assisted prefilling: the policy\'s top R tokens (capped at V)', { min: 1, default: DEMO_DEFAULTS.rank }),
    ppoSteps: integer('--ppo-steps <N>', 'PPO optimisation steps', { min: 1, default: DEMO_DEFAULTS.ppoSteps }),
    ppoSamples: integer('--ppo-samples <N>', 'PPO responses per batch', { min: 1, default: DEMO_DEFAULTS.ppoSamples }),
    memoryBudget: memoryBudget(),
    html: flag('--no-html', 'skip the HTML report (index.html)', { default: true }),
    quiet: flag('--quiet', 'no progress on stderr'),
  },
  writesOutFolder: true,
  helpAfter: `
Writes into the report folder: index.html (plots under plots/, their data under data/), analyze.json,
a train run folder per trained policy (policy.json, log.jsonl, summary.json), attack-<policy>.json,
lambda-scaling.json, summary.json and manifest.json (the CLI commands that reproduce each file).
Ctrl-C stops after the current step and keeps what is done.

Examples:
  $ harm-horizon demo
  $ harm-horizon demo --out report --json > summary.json
  $ harm-horizon demo examples/scenarios/three-token.json --out three-token-report`,
  async run(p, context): Promise<DemoSummary> {
    const { quiet, memoryBudget: gib, ...rest } = p;
    const options = { ...DEMO_DEFAULTS, ...rest, memoryBudgetBytes: budgetOf(gib).memoryBudgetBytes, command: commandLine(demo, p) };
    return demoScript(options, quiet ? { ...context, progress: () => SILENT, stage: () => {} } : context);
  },
  render: renderDemoSummary,
  exitCode: (r) => (r.interrupted ? 130 : 0),
});

/** What the demo reports while it works (for progress bars). */
export interface DemoHooks {
  /** A new stage begins. */
  onStage?: (label: string) => void;
  /** `units` more units of work are done. */
  onTick?: (units: number) => void;
  /** Polled between steps: stop early and keep what is done (Ctrl-C). */
  shouldStop?: () => boolean;
}

/**
 * Runs the demo (the library form of `harm-horizon demo`) and writes the report folder; returns the
 * summary (also written as `summary.json`). Throws a `HarmHorizonError` for bad input (scenario,
 * parameters, unwritable folder) before any work, and an `Error` naming the file when a write fails
 * midway. With `hooks.shouldStop` returning true it stops after the current step, keeps every
 * finished file and returns with `interrupted`.
 */
export async function runDemo(options: Partial<DemoOptions> & { out: string }, hooks: DemoHooks = {}): Promise<DemoSummary> {
  const { lambdas = DEMO_DEFAULTS.lambdas, memoryBudgetBytes, ...given } = options;
  const p = completeParams(demo.params, { ...given, ...(memoryBudgetBytes === undefined ? {} : { memoryBudget: memoryBudgetBytes / 1024 ** 3 }) });
  const context: CommandContext = createContext({
    shouldStop: hooks.shouldStop,
    stage: hooks.onStage,
    progress: () => ({ tick: (units) => hooks.onTick?.(units), finish: () => {} }),
  });
  return demoScript({ ...DEMO_DEFAULTS, ...p, lambdas, memoryBudgetBytes: budgetOf(p.memoryBudget).memoryBudgetBytes, command: commandLine(demo, p) }, context);
}
