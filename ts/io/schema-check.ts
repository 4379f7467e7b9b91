/**
 * Runs a TypeBox schema (a JSON Schema) over a value and reports the first violation as the
 * project's field path (`mlp.hidden[0]`, `transformer.heads`) with a reason that quotes the value.
 */
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** JSON Pointer (`/mlp/hidden/0`) → field path (`mlp.hidden[0]`). */
export function pointerToField(pointer: string): string {
  if (pointer === '') return '';
  let out = '';
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^(0|[1-9][0-9]*)$/.test(seg)) out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number') return String(v);
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

export interface SchemaViolation {
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
  if (!first) return { field: '', reason: 'does not match the format' };
  const reason = first.value === undefined ? 'required field is missing' : `${first.message.toLowerCase()}, got ${describe(first.value)}`;
  return { field: pointerToField(first.path), reason };
}
