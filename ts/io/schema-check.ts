/**
 * Runs a TypeBox schema (a JSON Schema) over a value and reports the first violation as a field path
 * (`mlp.hidden[0]`, `harm.values.HARMFUL`) and a reason in the project's words ("expected a string,
 * got the number 42", "unknown key "lenght" (did you mean "length"?)", "must be an integer ≥ 1, got 0").
 * Every file format is checked this way; what a schema cannot say (row sums, names that must exist)
 * stays in hand-written checks after it.
 */
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { describe, didYouMean } from '../scenario/check.js';

export type PathSegment = string | number;

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** Field path of path segments: `mlp.hidden[0]`, `base["a b"]`. */
export function segmentsToField(segments: readonly PathSegment[]): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** JSON Pointer (`/mlp/hidden/0`) → path segments, a segment being a number where `value` holds an array. */
export function pointerToSegments(pointer: string, value?: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let at: unknown = value;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const index = /^(0|[1-9][0-9]*)$/.test(seg) && (value === undefined || Array.isArray(at));
    out.push(index ? Number(seg) : seg);
    at = typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[seg] : undefined;
  }
  return out;
}

/** JSON Pointer (`/mlp/hidden/0`) → field path (`mlp.hidden[0]`). */
export function pointerToField(pointer: string): string {
  return segmentsToField(pointerToSegments(pointer));
}

/** The failures a schema can word in its own way (see `withReasons`). */
export type ReasonKind = 'missing' | 'type' | 'finite' | 'range' | 'pattern' | 'minItems' | 'maxItems' | 'minProperties' | 'maxProperties' | 'unique' | 'unknownKey';
/** A reason in the format's own words, or undefined for the generic one; `root` is the whole
 *  document (e.g. to quote its size). */
export type Reason = (value: unknown, root: unknown) => string | undefined;
type Reasons = Partial<Record<ReasonKind, Reason>>;
const REASONS = Symbol('harm-horizon.reasons');

/**
 * A copy of `schema` with format-specific wording for its failures (kept off the published JSON:
 * symbol keys are not serialised). For `unique`, the value is the repeated item and the reason is
 * followed by where it first occurs; for `unknownKey` (on an object schema), the value is the key.
 */
export function withReasons<T extends TSchema>(schema: T, reasons: Reasons): T {
  const own = (schema as { [REASONS]?: Reasons })[REASONS];
  return { ...schema, [REASONS]: { ...own, ...reasons } };
}

function reasonOverride(schema: unknown, kind: ReasonKind): Reason | undefined {
  return (schema as { [REASONS]?: Reasons } | undefined)?.[REASONS]?.[kind];
}

export interface SchemaViolation {
  /** Where the bad value is, as path segments (for locating it in a text). */
  path: PathSegment[];
  field: string;
  reason: string;
}

/** The first violation of `schema` by `value`, or undefined if the value conforms. */
export function firstSchemaError(schema: TSchema, value: unknown): SchemaViolation | undefined {
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  if (check.Check(value)) return undefined;
  const first = check.Errors(value).First();
  if (!first) return { path: [], field: '', reason: 'does not match the format' };
  return explain(first, value);
}

const TYPE_ERRORS = new Set([
  ValueErrorType.Object,
  ValueErrorType.Array,
  ValueErrorType.String,
  ValueErrorType.Number,
  ValueErrorType.Integer,
  ValueErrorType.Boolean,
  ValueErrorType.Null,
  ValueErrorType.Literal,
  ValueErrorType.Union,
]);

/** The error to report for a union no branch of which accepts the value: the branch that got
 *  furthest into it (deepest path, then a constraint rather than a type mismatch). */
function unionBranchError(error: ValueError): ValueError | undefined {
  let best: ValueError | undefined;
  const rank = (e: ValueError) => e.path.length * 2 + (TYPE_ERRORS.has(e.type) ? 0 : 1);
  for (const branch of error.errors) {
    const e = branch.First();
    if (e && (best === undefined || rank(e) > rank(best))) best = e;
  }
  return best && (best.path !== error.path || !TYPE_ERRORS.has(best.type)) ? best : undefined;
}

function explain(error: ValueError, root: unknown): SchemaViolation {
  if (error.type === ValueErrorType.Union) {
    const inner = unionBranchError(error);
    if (inner) return explain(inner, root);
  }
  const path = pointerToSegments(error.path, root);
  if (error.type === ValueErrorType.ArrayUniqueItems) {
    const repeat = repeatedItem(error, path, root);
    if (repeat) return repeat;
  }
  return { path, field: segmentsToField(path), reason: reasonFor(error, root) };
}

/** A repeated item, reported at its second place: "duplicate token "a" (same as tokens[0])". */
function repeatedItem(error: ValueError, path: PathSegment[], root: unknown): SchemaViolation | undefined {
  if (!Array.isArray(error.value)) return undefined;
  const items = error.value.map((x) => JSON.stringify(x));
  const at = items.findIndex((x, i) => items.indexOf(x) < i);
  if (at < 0) return undefined;
  const item: unknown = error.value[at];
  const noun = reasonOverride(error.schema, 'unique')?.(item, root) ?? 'duplicate item';
  const second = [...path, at];
  return { path: second, field: segmentsToField(second), reason: `${noun} ${JSON.stringify(item)} (same as ${segmentsToField([...path, items.indexOf(items[at]!)])})` };
}

/** "≥ 0", "in (0, 1]": the bounds a number schema sets. An upper bound of 2^53 − 1 (the largest
 *  integer a double holds exactly) is only named for a value above it. */
function bounds(s: Record<string, unknown>, value: unknown): string {
  const lo = s['exclusiveMinimum'] ?? s['minimum'];
  let hi = s['exclusiveMaximum'] ?? s['maximum'];
  const open = s['exclusiveMinimum'] !== undefined;
  const close = s['exclusiveMaximum'] !== undefined;
  if (hi === Number.MAX_SAFE_INTEGER && !((value as number) > hi)) hi = undefined;
  if (lo !== undefined && hi !== undefined) return `in ${open ? '(' : '['}${lo}, ${hi}${close ? ')' : ']'}`;
  if (lo !== undefined) return `${open ? '>' : '≥'} ${lo}`;
  return `${close ? '<' : '≤'} ${hi}`;
}

function reasonFor(error: ValueError, root: unknown): string {
  const v = error.value;
  const s = error.schema as unknown as Record<string, unknown>;
  const got = `got ${describe(v)}`;
  const override = (kind: ReasonKind) => reasonOverride(s, kind)?.(v, root);
  if (v === undefined) return override('missing') ?? 'required field is missing';
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const key = String(pointerToSegments(error.path).at(-1));
      const own = reasonOverride(s, 'unknownKey')?.(key, root);
      if (own !== undefined) return own;
      const allowed = Object.keys((s['properties'] as object | undefined) ?? {});
      return `unknown key ${JSON.stringify(key)}${didYouMean(key, allowed)}${allowed.length > 0 ? `; allowed keys: ${allowed.join(', ')}` : ''}`;
    }
    case ValueErrorType.Object:
      return override('type') ?? `expected an object, ${got}`;
    case ValueErrorType.Array:
      return override('type') ?? `expected an array, ${got}`;
    case ValueErrorType.String:
      return override('type') ?? `expected a string, ${got}`;
    case ValueErrorType.Boolean:
      return override('type') ?? `expected true or false, ${got}`;
    case ValueErrorType.Null:
      return `expected null, ${got}`;
    case ValueErrorType.Literal:
      return override('type') ?? `must be ${JSON.stringify(s['const'])}, ${got}`;
    case ValueErrorType.Union: {
      const options = (s['anyOf'] as Record<string, unknown>[]).map((b) => b['const']);
      const literals = options.every((o) => o !== undefined);
      return override('type') ?? (literals ? `must be one of ${options.map((o) => JSON.stringify(o)).join(', ')}, ${got}` : `does not match any accepted form, ${got}`);
    }
    case ValueErrorType.Number:
      if (typeof v === 'number') return override('finite') ?? `must be a finite number, got ${v}`;
      return override('type') ?? `expected a number, ${got}`;
    case ValueErrorType.Integer: {
      const min = s['minimum'] === undefined ? '' : ` ${bounds(s, v)}`;
      return typeof v === 'number' ? `must be an integer${min}, got ${v}` : (override('type') ?? `expected an integer${min}, ${got}`);
    }
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.IntegerExclusiveMinimum:
    case ValueErrorType.IntegerExclusiveMaximum:
      return override('range') ?? `must be an integer ${bounds(s, v)}, got ${v}`;
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.NumberExclusiveMinimum:
    case ValueErrorType.NumberExclusiveMaximum:
      return override('range') ?? `must be ${bounds(s, v)}, got ${v}`;
    case ValueErrorType.StringMinLength:
      return s['minLength'] === 1 ? 'must not be empty' : `must have at least ${s['minLength']} characters, ${got}`;
    case ValueErrorType.StringPattern:
      return override('pattern') ?? `must match ${s['pattern']}, ${got}`;
    case ValueErrorType.ArrayMinItems:
      return override('minItems') ?? `must list at least ${s['minItems']} item${s['minItems'] === 1 ? '' : 's'}`;
    case ValueErrorType.ObjectMinProperties:
      return override('minProperties') ?? `must have at least ${s['minProperties']} key${s['minProperties'] === 1 ? '' : 's'}`;
    case ValueErrorType.ObjectMaxProperties:
      return override('maxProperties') ?? `must have at most ${s['maxProperties']} key${s['maxProperties'] === 1 ? '' : 's'}`;
    case ValueErrorType.ArrayMaxItems:
      return override('maxItems') ?? `must list at most ${s['maxItems']} item${s['maxItems'] === 1 ? '' : 's'}, got ${Array.isArray(v) ? v.length : describe(v)}`;
    default:
      return `${error.message.toLowerCase()}, ${got}`;
  }
}
