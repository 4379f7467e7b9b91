// One cell of a parameter sweep, run programmatically: the exact analysis of `refusal` at one λ,
// computed by the sweep machinery exactly as `harm-horizon sweep` computes it, and printed as the
// results line the sweep would append to its JSONL file.
// Run after the build: node examples/sweep-cell.mjs [lambda]
// (The sweep runner is the package's "./sweep" entry: `harm-horizon/sweep`.)
import { CellRunner, parseSweep } from 'harm-horizon/sweep';

const lambda = Number(process.argv[2] ?? 1);
// The same object a sweep file holds (JSON or YAML): one command, one scenario, a grid of one value.
const sweep = parseSweep({ command: 'analyze', scenario: 'refusal', grid: { lambda: [lambda] } }, 'sweep-cell.mjs', process.cwd());
const [cell] = sweep.cells;
const runner = new CellRunner(sweep.command, sweep.scenarios, sweep.baseDir);
const { line } = await runner.line(cell);
console.log(line);

// The cell's result, read back: the Gibbs optimum's KL against its small-λ prediction (λ²/2)·Σ I_t.
// The result is what `harm-horizon analyze refusal --lambda <λ> --json` prints.
const { result } = JSON.parse(line);
const kl = result.positions.reduce((a, p) => a + p.klOnPolicy, 0);
const predicted = ((lambda * lambda) / 2) * result.harmInformationSum;
console.log(`λ = ${lambda}: E[H] ${result.expectedHarm.base.toFixed(4)} → ${result.expectedHarm.aligned.toFixed(4)}, KL ${kl.toPrecision(4)} vs (λ²/2)·Var(H) ${predicted.toPrecision(4)}`);
