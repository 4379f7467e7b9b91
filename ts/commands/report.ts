/** `report`: a results folder or a sweep file → one self-contained HTML page with plots. */
import { dirname } from 'node:path';
import { writeReport, type ReportResult } from '../report/html.js';
import { commandLine } from './command-line.js';
import { declareCommand, string } from './declare.js';

export const report = declareCommand({
  name: 'report',
  description: 'turn a results folder or a sweep file into one self-contained HTML page: plots (SVG, data as CSV), tables, parameters and command lines',
  params: {
    input: string(
      'input',
      'a results folder (analyze*.json, train run folders, attack*.json, lambda-scaling.json, manifest.json, *.jsonl sweep results or rollout logs, profile*.json), a sweep file (JSON or YAML) or a rollout log',
      { positional: true, required: true },
    ),
    out: string('--out <dir>', 'output folder: index.html, plots/<name>.svg, data/<name>.csv (nothing is written elsewhere)', { required: true }),
    results: string('--results <path>', 'for a sweep file: its results (the folder harm-horizon sweep --out wrote, or a results .jsonl)'),
    title: string('--title <text>', 'page title (default: manifest.json\'s title, else the input\'s name)'),
  },
  writesOutFolder: true,
  helpAfter: `
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
  async run(p): Promise<ReportResult> {
    return writeReport(p.input, p.out, { command: commandLine(report, p), title: p.title, results: p.results });
  },
  render: (r) => `wrote ${r.html}: ${r.plots.length} plot${r.plots.length === 1 ? '' : 's'} (${r.plots.join(', ')}); SVG under ${dirname(r.html)}/plots, CSV under ${dirname(r.html)}/data`,
});
