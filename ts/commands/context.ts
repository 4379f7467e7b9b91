/**
 * What a command's run() gets from its caller: scenarios, engines and policy files (cached, so a
 * sweep runs many cells on one engine), and the caller's stop signal and progress.
 */
import { resolve } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { ExactEngine } from '../core/exact.js';
import { BASE, type Policy } from '../core/policy.js';
import { loadPolicy } from '../io/policy-file.js';
import type { CompiledScenario } from '../scenario/compiled.js';
import { compileScenario, type Scenario } from '../scenario/index.js';
import { resolveScenario, type ResolveOptions } from '../scenario/resolve.js';

export interface ScenarioRequest {
  seed?: number;
  memoryBudgetBytes: number;
  memoryBudgetName?: string;
  /** Monte Carlo only: the budget bounds the base table; the exact engine is tried separately. */
  samplingOnly?: boolean;
}

export interface CommandContext {
  /** The compiled scenario of a scenario argument. */
  scenario(arg: string, request: ScenarioRequest): CompiledScenario;
  /** The exact engine (the prefix tree for transformer policies), or null when it does not fit the budget. */
  /**
   * The exact engine when it fits the budget and the machine, else null (Monte Carlo only). With
   * `policyTables` (the default) the budget also counts a T × S × V policy table.
   */
  engine(scenario: CompiledScenario, memoryBudgetBytes: number, prefixTree?: boolean, policyTables?: boolean): ExactEngine | null;
  /** The exact engine of a command that needs it: as `engine`, but throws the error that says why it does not fit. */
  exactEngine(scenario: CompiledScenario, memoryBudgetBytes: number, prefixTree?: boolean, policyTables?: boolean): ExactEngine;
  /** A policy file (resolved against the caller's folder), or the base without one. */
  policy(path: string | undefined, scenario: CompiledScenario, engine: ExactEngine | null): Policy;
  /** Asked between steps of long runs: true stops them early (Ctrl-C). */
  shouldStop(): boolean;
  /** The signal that asked the run to stop (SIGINT, SIGTERM), or null. */
  stoppedBy(): NodeJS.Signals | null;
  /** Aborted by the first stop signal: commands without steps hand it to their native calls. */
  readonly signal?: AbortSignal;
  /** A one-line status of a long run (the CLI shows it on a terminal). */
  status(line: string): void;
  /** A progress bar of `total` units over a long run (the CLI draws it on a terminal). */
  progress(label: string, total: number): ProgressBar;
  /** A new stage of a long run (the CLI prints it on a line of its own where no progress bar shows). */
  stage(line: string): void;
  /** Something the user should know while the run goes on (a torn line removed); the CLI prints it on stderr. */
  warn(message: string): void;
}

export interface ProgressBar {
  /** `units` more units done; `note` says what is under way. */
  tick(units: number, note: string): void;
  finish(): void;
}

/** A progress bar that draws nothing. */
export const SILENT: ProgressBar = { tick: () => {}, finish: () => {} };

export interface ContextOptions {
  /** How a scenario argument becomes a scenario (default: a built-in name or a file). */
  resolveScenario?: (arg: string, options: ResolveOptions) => Scenario;
  /** Folder that relative policy paths are resolved against (default: the working directory). */
  baseDir?: string;
  shouldStop?: () => boolean;
  stoppedBy?: () => NodeJS.Signals | null;
  signal?: AbortSignal;
  status?: (line: string) => void;
  progress?: (label: string, total: number) => ProgressBar;
  stage?: (line: string) => void;
  warn?: (message: string) => void;
}

/** A context with caches of compiled scenarios (the last 8), engines and policies. */
/** Codes of an exact engine that does not fit (the budget or the machine): Monte Carlo takes over. */
const DOES_NOT_FIT = ['HH_STATE_SPACE_TOO_LARGE', 'HH_OUT_OF_MEMORY'];

export function createContext(options: ContextOptions = {}): CommandContext {
  const resolveArg = options.resolveScenario ?? resolveScenario;
  const scenarios = new Map<string, CompiledScenario>();
  // An engine, or the error of one that does not fit.
  const engines = new WeakMap<CompiledScenario, Map<string, ExactEngine | HarmHorizonError>>();
  const policies = new WeakMap<CompiledScenario, Map<string, Policy>>();
  const exactOrError = (scenario: CompiledScenario, memoryBudgetBytes: number, prefixTree: boolean, policyTables: boolean) => {
    let byKind = engines.get(scenario);
    if (!byKind) engines.set(scenario, (byKind = new Map()));
    const key = `${prefixTree}:${policyTables}:${memoryBudgetBytes}`;
    if (!byKind.has(key)) {
      try {
        byKind.set(key, new ExactEngine(scenario, { memoryBudgetBytes, prefixTree, policyTables }));
      } catch (error) {
        if (!(error instanceof HarmHorizonError && DOES_NOT_FIT.includes(error.code))) throw error;
        byKind.set(key, error);
      }
    }
    return byKind.get(key)!;
  };
  return {
    scenario(arg, request) {
      const key = JSON.stringify([arg, request.seed, request.samplingOnly ?? false]);
      let compiled = scenarios.get(key);
      if (!compiled) {
        const budget = { memoryBudgetBytes: request.memoryBudgetBytes, memoryBudgetName: request.memoryBudgetName };
        const s = resolveArg(arg, { seed: request.seed, ...budget, samplingOnly: request.samplingOnly });
        compiled = compileScenario(s, request.samplingOnly ? { memoryBudgetBytes: Infinity } : budget);
        if (scenarios.size >= 8) scenarios.delete(scenarios.keys().next().value!);
        scenarios.set(key, compiled);
      }
      return compiled;
    },
    engine(scenario, memoryBudgetBytes, prefixTree = false, policyTables = true) {
      const engine = exactOrError(scenario, memoryBudgetBytes, prefixTree, policyTables);
      return engine instanceof ExactEngine ? engine : null;
    },
    exactEngine(scenario, memoryBudgetBytes, prefixTree = false, policyTables = true) {
      const engine = exactOrError(scenario, memoryBudgetBytes, prefixTree, policyTables);
      if (engine instanceof ExactEngine) return engine;
      throw engine;
    },
    policy(path, scenario, engine) {
      if (path === undefined) return BASE;
      let byPath = policies.get(scenario);
      if (!byPath) policies.set(scenario, (byPath = new Map()));
      const full = options.baseDir === undefined ? path : resolve(options.baseDir, path);
      let policy = byPath.get(full);
      if (!policy) byPath.set(full, (policy = loadPolicy(full, scenario, engine?.numStates)));
      return policy;
    },
    shouldStop: options.shouldStop ?? (() => options.stoppedBy?.() != null),
    stoppedBy: options.stoppedBy ?? (() => (options.shouldStop?.() ? 'SIGINT' : null)),
    signal: options.signal,
    status: options.status ?? (() => {}),
    progress: options.progress ?? (() => SILENT),
    stage: options.stage ?? (() => {}),
    warn: options.warn ?? (() => {}),
  };
}
