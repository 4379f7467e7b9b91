/** The `report` command: a results folder or a sweep file → one self-contained HTML page with plots. */
import type { Command } from 'commander';
import * as h from './helpers.js';
import { writeReport } from '../report/html.js';

/** A command line as the user could type it again (arguments with spaces or quotes are quoted). */
function commandLine(args: string[]): string {
  return ['harm-horizon', ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function addReportCommands(program: Command): void {
  program
    .command('report')
    .description('turn a results folder or a sweep file into one self-contained HTML page: plots (SVG, data as CSV), tables, parameters and command lines')
    .argument(
      '<input>',
      'a results folder (analyze*.json, train run folders, attack*.json, lambda-scaling.json, manifest.json, *.jsonl sweep results or rollout logs, profile*.json), a sweep file (JSON or YAML) or a rollout log',
    )
    .requiredOption('--out <dir>', 'output folder: index.html, plots/<name>.svg, data/<name>.csv (nothing is written elsewhere)')
    .option('--results <path>', 'for a sweep file: its results (the folder harm-horizon sweep --out wrote, or a results .jsonl)')
    .option('--title <text>', 'page title (default: manifest.json\'s title, else the input\'s name)')
    .option('--json', 'print {html, plots, csv} as JSON')
    .addHelpText(
      'after',
      `
A results folder may hold:
  analyze.json          harm-horizon analyze <scenario> --json > analyze.json
  <run>/summary.json    harm-horizon train <scenario> --out <run>   (with log.jsonl, policy.json)
  attack-<name>.json    harm-horizon attack <scenario> [--policy <run>/policy.json] --json > attack-<name>.json
  lambda-scaling.json   rows {lambda, t, ratio}
  manifest.json         {"title": "...", "commands": ["harm-horizon ..."], "parameters": {...}}
  *.jsonl               sweep results (harm-horizon sweep --out DIR writes DIR/results.jsonl)
  *.jsonl               rollout logs (harm-horizon rollouts / import), profiled as harm-horizon profile does
  profile*.json         harm-horizon profile <log> --json > profile.json

Examples:
  $ harm-horizon analyze refusal --json > results/analyze.json
  $ harm-horizon train refusal --objective standard --out results/standard
  $ harm-horizon attack refusal --json > results/attack-base.json
  $ harm-horizon report results --out report          # then open report/index.html
  $ harm-horizon sweep examples/sweeps/deep-gamma.yaml --out runs/deep-gamma
  $ harm-horizon report examples/sweeps/deep-gamma.yaml --results runs/deep-gamma --out deep-gamma-report
  $ harm-horizon report runs/deep-gamma --out deep-gamma-report --json
  $ harm-horizon rollouts refusal --samples 2000 --out runs/refusal-log
  $ harm-horizon report runs/refusal-log/log.jsonl --out refusal-log-report`,
    )
    .action(async (input: string, opts: { out: string; title?: string; results?: string; json?: boolean }) => {
      const result = await writeReport(input, opts.out, { command: commandLine(process.argv.slice(2)), title: opts.title, results: opts.results });
      if (opts.json) h.json(result);
      else h.write(`wrote ${result.html}: ${result.plots.length} plot${result.plots.length === 1 ? '' : 's'} (${result.plots.join(', ')}); SVG under ${opts.out}/plots, CSV under ${opts.out}/data`);
    });
}
