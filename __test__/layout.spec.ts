/**
 * The layout rules of ts/, checked from the imports of every ts/**\/*.ts file:
 * - only ts/core/ imports the native addon (native/index.cjs, or ts/core/native.ts from outside core);
 * - only ts/cli/ imports commander;
 * - ts/report/, ts/sweep/ and ts/commands/ never import ts/cli/;
 * - no import cycles (type-only imports included: a cycle of types is still a tangle).
 * The checker is tested on small synthetic graphs too, so a violation is known to fail.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A module graph: file (relative to the repository) → its import specifiers, resolved where relative. */
type Graph = Map<string, string[]>;

/** Static imports and re-exports, and dynamic import('…') with a literal. */
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

export function importSpecifiers(source: string): string[] {
  // Comments may quote import lines (`import … from './x.js'` in a doc comment): drop them first.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  return [...code.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]);
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The graph of ts/: relative specifiers resolved to repository paths (`.js` → `.ts`), others kept (`commander`). */
function repositoryGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of tsFiles(join(ROOT, 'ts'))) {
    const specifiers = importSpecifiers(readFileSync(file, 'utf8')).map((s) => (s.startsWith('.') ? relative(ROOT, resolve(dirname(file), s)).replace(/\.js$/, '.ts') : s));
    graph.set(relative(ROOT, file), specifiers);
  }
  return graph;
}

/** Every broken rule, one line each. */
export function layoutViolations(graph: Graph): string[] {
  const out: string[] = [];
  const inside = (file: string, folder: string) => file.startsWith(`ts/${folder}/`);
  for (const [file, imports] of graph) {
    for (const target of imports) {
      const addon = target.startsWith('native/') || target === 'ts/core/native.ts';
      if (addon && !inside(file, 'core')) out.push(`${file} imports the addon (${target}): only ts/core/ may`);
      if ((target === 'commander' || target.startsWith('commander/')) && !inside(file, 'cli')) out.push(`${file} imports commander: only ts/cli/ may`);
      if (target.startsWith('ts/cli/') && ['report', 'sweep', 'commands'].some((f) => inside(file, f))) out.push(`${file} imports ${target}: report/, sweep/ and commands/ never import cli/`);
    }
  }
  // Cycles: a depth-first search; a back edge to a file on the current path closes a cycle.
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    path.push(file);
    for (const target of graph.get(file) ?? []) {
      if (!graph.has(target)) continue;
      if (state.get(target) === 'open') out.push(`import cycle: ${[...path.slice(path.indexOf(target)), target].join(' → ')}`);
      else if (!state.has(target)) visit(target);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return out;
}

test('the checker finds each kind of violation in a synthetic graph, and none in a clean one', (t) => {
  const clean: Graph = new Map([
    ['ts/core/native.ts', ['native/index.cjs']],
    ['ts/core/exact.ts', ['ts/core/native.ts']],
    ['ts/commands/analyze.ts', ['ts/core/exact.ts']],
    ['ts/cli/main.ts', ['commander', 'ts/commands/analyze.ts']],
  ]);
  t.deepEqual(layoutViolations(clean), []);
  const broken: Graph = new Map([
    ...clean,
    ['ts/workflows/train.ts', ['ts/core/native.ts', 'native/index.cjs']],
    ['ts/report/html.ts', ['commander', 'ts/cli/main.ts']],
    ['ts/sweep/a.ts', ['ts/sweep/b.ts']],
    ['ts/sweep/b.ts', ['ts/sweep/c.ts']],
    ['ts/sweep/c.ts', ['ts/sweep/a.ts']],
  ]);
  t.deepEqual(layoutViolations(broken), [
    'ts/workflows/train.ts imports the addon (ts/core/native.ts): only ts/core/ may',
    'ts/workflows/train.ts imports the addon (native/index.cjs): only ts/core/ may',
    'ts/report/html.ts imports commander: only ts/cli/ may',
    'ts/report/html.ts imports ts/cli/main.ts: report/, sweep/ and commands/ never import cli/',
    'import cycle: ts/sweep/a.ts → ts/sweep/b.ts → ts/sweep/c.ts → ts/sweep/a.ts',
  ]);
});

test('import specifiers: static, re-exports, side effects and dynamic imports; not those in comments', (t) => {
  const source = [
    "import { a } from './a.js';",
    "import type { B } from '../b.js';",
    "export { c } from './c.js';",
    "import './d.js';",
    "const e = await import('./e.js');",
    "/** import { x } from './not-an-import.js'; */",
    "import {\n  f,\n  g,\n} from 'commander';",
  ].join('\n');
  t.deepEqual(importSpecifiers(source), ['./a.js', '../b.js', './c.js', './d.js', 'commander', './e.js'].sort((x, y) => source.indexOf(x) - source.indexOf(y)));
});

test('ts/ keeps the layout rules', (t) => {
  const graph = repositoryGraph();
  t.true(graph.size > 40, `${graph.size} files scanned`);
  t.true(graph.get('ts/cli/main.ts')?.includes('commander'), 'the CLI is seen importing commander');
  t.deepEqual(layoutViolations(graph), []);
});
