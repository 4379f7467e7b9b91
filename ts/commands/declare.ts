/**
 * The declaration of a command: its parameters (type, default, check, help text, in one place), a
 * `run(params, context)` returning a typed result and a `render(result)` for the terminal. The CLI
 * (ts/cli/), the sweep cells and the demo are all built from these declarations.
 */
import { HarmHorizonError } from '../core/errors.js';
import type { CommandContext } from './context.js';

/** One parameter: how to read it from the command line and check it from JSON (a sweep file). */
export interface Param<T> {
  readonly kind: 'number' | 'integer' | 'string' | 'enum' | 'flag' | 'list';
  /** The flag as the CLI spells it (`--memory-budget`), or the name of a positional argument. */
  readonly flag: string;
  /** Placeholder of the value in the help (`<GiB>`); absent for flags. */
  readonly placeholder?: string;
  readonly help: string;
  readonly default?: T;
  /** Must be given (on the command line and to run()); a parameter without default or `required` may be left out, and run() decides (e.g. "the scenario's λ"). */
  readonly required?: boolean;
  /** A positional argument rather than an option. */
  readonly positional?: boolean;
  /** A positional argument that takes the rest of the words (`<files...>`); its value is a list. */
  readonly variadic?: boolean;
  /** How the help shows a default computed on this machine (`all cores`). */
  readonly defaultText?: string;
  readonly choices?: readonly string[];
  /** Bounds of a number or whole number (`x ≥ min`, `x > above`, `x ≤ max`, `|x| ≤ maxAbs`). */
  readonly min?: number;
  readonly above?: number;
  readonly max?: number;
  readonly maxAbs?: number;
  /** What a valid value is, as error messages say it (`a finite number ≥ 0`). */
  readonly must: string;
  /** The value from its command-line text or JSON value; throws HH_INVALID_ARGUMENT naming the flag. */
  read(value: unknown): T;
}

export type Params = Record<string, Param<unknown>>;

/** The values of a parameter set: a parameter with a default or required is always present. */
export type ValuesOf<P extends Params> = {
  [K in keyof P]: P[K] extends Param<infer T> ? (P[K] extends { default: T } | { required: true } ? T : T | undefined) : never;
};

export interface CommandDeclaration<P extends Params, R> {
  /** The command's words (`analyze`, `scenario validate`). */
  readonly name: string;
  readonly description: string;
  readonly params: P;
  /** Help text after the options: examples and notes. */
  readonly helpAfter?: string;
  /** Parameters optional to run() callers (a sweep cell) but required on the command line (`--out`). */
  readonly commandLineRequires?: readonly string[];
  run(params: ValuesOf<P>, context: CommandContext): Promise<R>;
  render(result: R): string;
  /** The process's exit code after a result (130: stopped by Ctrl-C); default 0. */
  exitCode?(result: R): number;
  /** Lines for stderr after a result (e.g. training did not converge). */
  warnings?(result: R): string[];
  /** A result that reports a failure (an invalid file, failed sweep cells): the error the CLI exits with, after printing the result. */
  failure?(result: R): Error | undefined;
  /** Writes the folder `--out` names: the CLI refuses one holding another run's results (unless --force) and locks it for the run. */
  readonly writesOutFolder?: boolean;
  /** Signals that stop a long run (default Ctrl-C only); a second one leaves at once. */
  readonly stopSignals?: readonly NodeJS.Signals[];
  /**
   * What the first stop signal does: `after-step`, the run stops after its current step and keeps
   * what is done (it polls `context.shouldStop()`); `abort`, the computation is aborted
   * (`context.signal`) and the command exits 130 (143 for SIGTERM) with nothing written. Without
   * either, the process exits at once (130/143), as a command that is never long.
   */
  readonly onStop?: StopBehaviour;
}

export type StopBehaviour = 'after-step' | 'abort';

/** Declares a command (the identity, typed: `params` fixes the types of `run`'s values). */
export function declareCommand<P extends Params, R>(declaration: CommandDeclaration<P, R>): CommandDeclaration<P, R> {
  return declaration;
}

function bad(flag: string, must: string, value: unknown): HarmHorizonError {
  return new HarmHorizonError('HH_INVALID_ARGUMENT', `${flag} must be ${must}, got ${typeof value === 'string' ? value : JSON.stringify(value)}`, flag);
}

export interface Common<T> {
  default?: T;
  required?: boolean;
}

/** Splits `--name <X>` into the flag and its placeholder. */
function split(spec: string): { flag: string; placeholder?: string } {
  const [flag, placeholder] = spec.split(' ');
  return { flag, placeholder };
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') return Number(value);
  return NaN;
}

/** A finite number, optionally bounded: `min ≤ x`, `x > above`, `x ≤ max`. */
export function number<const O extends Common<number> & { min?: number; above?: number; max?: number; maxAbs?: number }>(spec: string, help: string, o: O = {} as O) {
  const must = o.maxAbs !== undefined ? `a finite number with |x| ≤ ${o.maxAbs}` : o.above !== undefined && o.max !== undefined ? `a number in (${o.above}, ${o.max}]` : o.above !== undefined ? `a finite number > ${o.above}` : o.min !== undefined ? `a finite number ≥ ${o.min}` : 'a finite number';
  const { flag, placeholder } = split(spec);
  const param: Param<number> & O = {
    ...o,
    kind: 'number',
    flag,
    placeholder,
    help,
    must,
    read(value) {
      const x = toNumber(value);
      const ok = Number.isFinite(x) && !(o.min !== undefined && x < o.min) && !(o.above !== undefined && x <= o.above) && !(o.max !== undefined && x > o.max) && !(o.maxAbs !== undefined && Math.abs(x) > o.maxAbs);
      if (!ok) throw bad(flag, must, value);
      return x;
    },
  };
  return param;
}

/** A whole number ≥ min (default 0). */
export function integer<const O extends Common<number> & { min?: number; defaultText?: string }>(spec: string, help: string, o: O = {} as O) {
  const min = o.min ?? 0;
  const must = `a whole number ≥ ${min}`;
  const { flag, placeholder } = split(spec);
  const param: Param<number> & O = {
    ...o,
    kind: 'integer',
    flag,
    placeholder,
    help,
    min,
    must,
    read(value) {
      const x = toNumber(value);
      if (!Number.isSafeInteger(x) || x < min) throw bad(flag, must, value);
      return x;
    },
  };
  return param;
}

export function string<const O extends Common<string> & { positional?: boolean; defaultText?: string }>(spec: string, help: string, o: O = {} as O) {
  const { flag, placeholder } = split(spec);
  const param: Param<string> & O = {
    ...o,
    kind: 'string',
    flag,
    placeholder,
    help,
    must: 'a non-empty string',
    read(value) {
      if (typeof value !== 'string' || value === '') throw bad(flag, 'a non-empty string', value);
      return value;
    },
  };
  return param;
}

export function oneOf<const C extends readonly string[], const O extends Common<C[number]>>(spec: string, choices: C, help: string, o: O = {} as O) {
  const { flag, placeholder } = split(spec);
  const param: Param<C[number]> & O = {
    ...o,
    kind: 'enum',
    flag,
    placeholder,
    help,
    choices,
    must: `one of ${choices.join(', ')}`,
    read(value) {
      if (typeof value !== 'string' || !choices.includes(value)) throw bad(flag, `one of ${choices.join(', ')}`, value);
      return value as C[number];
    },
  };
  return param;
}

/** A value read from its text by `parse` (which throws HH_INVALID_ARGUMENT naming the flag), e.g. a shard `i/n`. */
export function parsed<T, O extends Common<T> = {}>(spec: string, help: string, parse: (text: string) => T, o: O = {} as O) {
  const { flag, placeholder } = split(spec);
  const param: Param<T> & O = {
    ...o,
    kind: 'string',
    flag,
    placeholder,
    help,
    must: 'text',
    read(value) {
      if (typeof value !== 'string') throw bad(flag, 'text', value);
      return parse(value);
    },
  };
  return param;
}

/** The rest of the positional words (`<files...>`): a non-empty list of non-empty strings. */
export function strings(name: string, help: string) {
  const param: Param<string[]> & { positional: true; variadic: true; required: true } = {
    kind: 'list',
    flag: name,
    help,
    must: 'one or more non-empty strings',
    positional: true,
    variadic: true,
    required: true,
    read(value) {
      const xs = Array.isArray(value) ? value : [value];
      if (xs.length === 0 || !xs.every((x) => typeof x === 'string' && x !== '')) throw bad(name, param.must, value);
      return xs as string[];
    },
  };
  return param;
}

/** A switch: present (true) or not (false). `--no-x` flags default to true. */
export function flag(spec: string, help: string, o: { default?: boolean } = {}) {
  const param: Param<boolean> & { default: boolean } = {
    kind: 'flag',
    flag: spec,
    help,
    default: o.default ?? false,
    must: 'true or false',
    read(value) {
      if (typeof value !== 'boolean') throw bad(spec, 'true or false', value);
      return value;
    },
  };
  return param;
}

/** A comma-separated list of whole numbers (a JSON array in sweep files), with its own check. */
export function integerList<const O extends Common<number[]>>(spec: string, help: string, check: (xs: number[]) => boolean, must: string, o: O = {} as O) {
  const { flag, placeholder } = split(spec);
  const param: Param<number[]> & O = {
    ...o,
    kind: 'list',
    flag,
    placeholder,
    help,
    must,
    read(value) {
      const xs = typeof value === 'string' ? value.split(',').map((x) => toNumber(x.trim())) : typeof value === 'number' ? [value] : Array.isArray(value) ? value.map(toNumber) : [NaN];
      if (!xs.every((x) => Number.isSafeInteger(x)) || !check(xs)) throw bad(flag, must, value);
      return xs;
    },
  };
  return param;
}

/**
 * The full values of a command from a partial set (a sweep cell, a demo step, a test): each given
 * value checked, defaults filled in, a missing required one refused naming its flag.
 */
export function completeParams<P extends Params>(params: P, given: Record<string, unknown>): ValuesOf<P> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(given)) {
    const param = params[key];
    if (!param) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `unknown parameter ${key}`, key);
    if (value !== undefined) out[key] = param.read(value);
  }
  for (const [key, param] of Object.entries(params)) {
    if (out[key] !== undefined) continue;
    if (param.default !== undefined) out[key] = param.default;
    else if (param.required) throw new HarmHorizonError('HH_INVALID_ARGUMENT', `${param.flag} is required`, param.flag);
  }
  return out as ValuesOf<P>;
}

/** A declaration of any command (for lists of them: the CLI, the layout test). */
export type AnyCommand = CommandDeclaration<Params, unknown>;
