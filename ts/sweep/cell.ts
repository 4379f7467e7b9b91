/**
 * Running one cell: the command's computation on the cell's parameters, with caches of compiled
 * scenarios, exact engines and policies shared by the cells a worker runs.
 */
import { resolve } from 'node:path';
import { DEFAULT_RANK, fineTuneAttack, prefillAttack, rankAssistedAttack, sampledPrefillAttack } from '../workflows/attack.js';
import type { CompiledScenario } from '../scenario/compiled.js';
import { HarmHorizonError } from '../core/errors.js';
import { estimateReport } from '../estimate-report.js';
import { DEFAULT_HORIZON_TOLERANCE, ExactEngine } from '../core/exact.js';
import type { GradientEstimator } from '../core/montecarlo.js';
import { BASE, DEFAULT_TRANSFORMER, type Policy } from '../core/policy.js';
import { loadPolicy } from '../io/policy-file.js';
import { compileScenario, type Scenario, type ScenarioOptions } from '../scenario/index.js';
import { DEFAULT_MIX, train, TRAIN_DEFAULTS, type Algorithm, type ObjectiveKind, type TrainRecord } from '../workflows/train.js';
import type { SweepCommand } from './params.js';
import type { ResultLine } from './results.js';

/** A cell as the main thread posts it to a worker. */
export interface WireCell {
  id: string;
  seed: number;
  params: Record<string, unknown>;
  scenarioKey: string;
}

interface ScenarioEntry {
  compiled: CompiledScenario;
  engine?: ExactEngine | null;
  /** The prefix-tree engine, for transformer policies. */
  prefixTree?: ExactEngine | null;
  policies: Map<string, Policy>;
}

/** Runs cells with caches of compiled scenarios, exact engines and policies. */
export class CellRunner {
  readonly command: SweepCommand;
  readonly baseDir: string;
  readonly #scenarios: Map<string, Scenario>;
  readonly #cache = new Map<string, ScenarioEntry>();
  readonly #timing: boolean;
  readonly #budget: ScenarioOptions;

  constructor(command: SweepCommand, scenarios: Map<string, Scenario>, baseDir: string, timing = false, memoryBudgetBytes?: number) {
    this.#budget = memoryBudgetBytes === undefined ? {} : { memoryBudgetBytes };
    this.command = command;
    this.#scenarios = scenarios;
    this.baseDir = baseDir;
    this.#timing = timing;
  }

  #entry(key: string): ScenarioEntry {
    let entry = this.#cache.get(key);
    if (entry) return entry;
    const scenario = this.#scenarios.get(key);
    if (!scenario) throw new HarmHorizonError('HH_INTERNAL', `unknown scenario configuration ${key}`);
    entry = { compiled: compileScenario(scenario, this.#budget), policies: new Map() };
    if (this.#cache.size >= 8) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(key, entry);
    return entry;
  }

  #engine(entry: ScenarioEntry, required: boolean): ExactEngine | null {
    if (entry.engine === undefined) {
      try {
        entry.engine = new ExactEngine(entry.compiled, this.#budget);
      } catch (error) {
        if (!(error instanceof HarmHorizonError && error.code === 'HH_STATE_SPACE_TOO_LARGE')) throw error;
        entry.engine = null;
      }
    }
    if (!entry.engine && required) throw new HarmHorizonError('HH_STATE_SPACE_TOO_LARGE', `the exact state space of ${entry.compiled.name} does not fit the memory budget`);
    return entry.engine;
  }

  /** The prefix-tree engine (transformer policies are exact there), or null when it does not fit. */
  #prefixTree(entry: ScenarioEntry): ExactEngine | null {
    if (entry.prefixTree === undefined) {
      try {
        entry.prefixTree = new ExactEngine(entry.compiled, { ...this.#budget, prefixTree: true });
      } catch (error) {
        if (!(error instanceof HarmHorizonError && error.code === 'HH_STATE_SPACE_TOO_LARGE')) throw error;
        entry.prefixTree = null;
      }
    }
    return entry.prefixTree;
  }

  #policyFile(entry: ScenarioEntry, path: string, engine: ExactEngine | null): Policy {
    let policy = entry.policies.get(path);
    if (!policy) {
      policy = loadPolicy(resolve(this.baseDir, path), entry.compiled, engine?.numStates);
      entry.policies.set(path, policy);
    }
    return policy;
  }

  /** The result line of a cell (without the newline). */
  async line(cell: WireCell): Promise<{ line: string; seconds: number }> {
    const started = performance.now();
    const result = await this.run(cell);
    const seconds = (performance.now() - started) / 1000;
    const out: ResultLine = { id: cell.id, command: this.command, params: cell.params, seed: cell.seed, result };
    if (this.#timing) out.seconds = seconds;
    return { line: JSON.stringify(out), seconds };
  }

  /** The result summary of a cell. */
  async run(cell: WireCell): Promise<Record<string, unknown>> {
    const p = cell.params;
    const entry = this.#entry(cell.scenarioKey);
    const c = entry.compiled;
    switch (this.command) {
      case 'analyze': {
        const engine = this.#engine(entry, true)!;
        const a = engine.analyze((p.lambda as number | undefined) ?? c.defaults.lambda, (p.tolerance as number | undefined) ?? DEFAULT_HORIZON_TOLERANCE);
        return {
          lambda: a.lambda,
          expectedHarmBase: a.base.expectedHarm,
          expectedHarmAligned: a.alignedExpectedHarm,
          harmVariance: a.base.harmVariance,
          horizon: a.base.horizon,
          states: engine.numStates,
          decidedAtStart: a.base.decisionTime[0],
          harmInformation: finite(a.base.harmInformation),
          klOnPolicy: finite(a.klOnPolicy),
          klTeacherForced: finite(a.klTeacherForced),
          asrBase: finite(a.asrBase),
          asrAligned: finite(a.asrAligned),
        };
      }
      case 'estimate': {
        let exact = this.#engine(entry, false);
        const policy = typeof p.policy === 'string' ? this.#policyFile(entry, p.policy, exact) : BASE;
        if (policy.kind === 'transformer') exact = this.#prefixTree(entry);
        const r = await estimateReport(c, policy, { samples: p.samples as number, seed: cell.seed, rollouts: p.rollouts as number | undefined, estimator: ((p.estimator as string | undefined) ?? 'innovation') as GradientEstimator }, exact);
        return {
          harmSource: r.harmSource,
          expectedHarm: r.expectedHarm,
          expectedHarmSE: r.expectedHarmSE,
          exactExpectedHarm: r.exactExpectedHarm,
          harmInformation: r.positions.map((x) => x.harmInformation),
          harmInformationSE: r.positions.map((x) => x.harmInformationSE),
          klOnPolicy: r.positions.map((x) => x.klOnPolicy),
          klOnPolicySE: r.positions.map((x) => x.klOnPolicySE),
          klTeacherForced: r.positions.map((x) => x.klTeacherForced),
          gradNorm: r.positions.map((x) => x.gradNorm),
          gradVariance: r.positions.map((x) => x.gradVariance),
        };
      }
      case 'train': {
        const engine = p.policy === 'transformer' ? this.#prefixTree(entry) : this.#engine(entry, false);
        const steps = (p.steps as number | undefined) ?? 1000;
        const hidden = (p.mlpHidden as number[] | undefined) ?? [32];
        let first: TrainRecord | undefined;
        let last: TrainRecord | undefined;
        await train(
          c,
          engine,
          {
            ...TRAIN_DEFAULTS,
            objective: {
              kind: ((p.objective as string | undefined) ?? 'standard') as ObjectiveKind,
              lambda: (p.lambda as number | undefined) ?? c.defaults.lambda,
              mu: (p.mu as number | undefined) ?? c.defaults.mu,
              gamma: (p.gamma as number | undefined) ?? c.defaults.gamma,
              mix: (p.mix as number | undefined) ?? DEFAULT_MIX,
            },
            algorithm: ((p.algorithm as string | undefined) ?? 'exact') as Algorithm,
            policy: ((p.policy as string | undefined) ?? 'tabular') as 'tabular' | 'mlp' | 'transformer',
            mlp: { order: (p.mlpOrder as number | undefined) ?? c.order, hidden, activation: ((p.mlpActivation as string | undefined) ?? 'tanh') as 'tanh' | 'relu' },
            transformer: {
              layers: (p.layers as number | undefined) ?? DEFAULT_TRANSFORMER.layers,
              width: (p.width as number | undefined) ?? DEFAULT_TRANSFORMER.width,
              heads: (p.heads as number | undefined) ?? DEFAULT_TRANSFORMER.heads,
              mlpWidth: (p.mlpWidth as number | undefined) ?? DEFAULT_TRANSFORMER.mlpWidth,
            },
            steps,
            seed: cell.seed,
            optimizer: ((p.optimizer as string | undefined) ?? TRAIN_DEFAULTS.optimizer) as 'adam' | 'sgd',
            learningRate: (p.lr as number | undefined) ?? TRAIN_DEFAULTS.learningRate,
            schedule: ((p.schedule as string | undefined) ?? 'cosine') as 'cosine' | 'constant',
            samples: (p.samples as number | undefined) ?? TRAIN_DEFAULTS.samples,
            clip: (p.clip as number | undefined) ?? TRAIN_DEFAULTS.clip,
            epochs: (p.epochs as number | undefined) ?? TRAIN_DEFAULTS.epochs,
            evalEvery: steps,
          },
          (record) => {
            first ??= record;
            last = record;
          },
        );
        if (!last) throw new HarmHorizonError('HH_INTERNAL', 'training produced no record');
        return {
          steps: last.step,
          objective: last.objective,
          expectedHarm: last.expectedHarm,
          kl: last.kl,
          parts: last.parts,
          klOnPolicy: last.klOnPolicy,
          klTeacherForced: last.klTeacherForced ?? null,
          recovery: last.recovery,
          asr: last.asr ?? null,
          gradNorm: last.gradNorm,
          ...(last.batch ? { batch: last.batch } : {}),
          ...(first?.fit ? { fit: first.fit } : {}),
        };
      }
      case 'attack': {
        let engine = this.#engine(entry, false);
        const policy: Policy =
          typeof p.policy === 'string' ? this.#policyFile(entry, p.policy, engine) : typeof p.lambda === 'number' ? { kind: 'gibbs', lambda: p.lambda } : BASE;
        if (policy.kind === 'transformer') engine = this.#prefixTree(entry);
        const rank = (p.rank as number | undefined) ?? DEFAULT_RANK;
        const out: Record<string, unknown> = { rank: Math.min(rank, c.tokens.length) };
        if (engine) {
          out.method = 'exact';
          out.prefill = finite(prefillAttack(engine, policy));
          out.rap = finite(rankAssistedAttack(engine, policy, rank));
        } else {
          const sampled = sampledPrefillAttack(c, policy, { samples: (p.samples as number | undefined) ?? 2000, seed: cell.seed });
          out.method = 'sampled';
          out.prefill = finite(sampled.asr);
          out.prefillSE = finite(sampled.se);
          out.rap = null;
        }
        const steps = (p.finetuneSteps as number | undefined) ?? 0;
        if (steps > 0) {
          if (!engine) throw new HarmHorizonError('HH_INVALID_ARGUMENT', 'the fine-tuning attack is exact: it needs the exact state space');
          const objective = ((p.finetuneObjective as string | undefined) ?? 'sft') as 'sft' | 'constrained';
          const { trace } = fineTuneAttack(engine, policy, { steps, learningRate: (p.finetuneLr as number | undefined) ?? 1, objective });
          const final = trace[trace.length - 1]!;
          out.finetune = { objective, asr: finite(final.asr), loss: final.loss, lossPerPosition: finite(final.lossPerPosition) };
        }
        return out;
      }
    }
  }
}

function finite(a: ArrayLike<number>): (number | null)[] {
  return Array.from(a, (x) => (Number.isFinite(x) ? x : null));
}
