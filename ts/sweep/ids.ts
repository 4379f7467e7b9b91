/**
 * A cell's identity: its id is the first 16 hex digits of the SHA-256 of the canonical JSON (sorted
 * keys) of `{command, params}`; its seed, without a `seed` parameter, is derived from the sweep seed
 * and the id. Both are pure functions of the cell, so resumed and sharded runs agree.
 */
import { createHash } from 'node:crypto';

/** JSON with object keys sorted (recursively): the canonical form ids are hashed from. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k];
  return out;
}

/** A cell's id: 16 hex digits of SHA-256 over the canonical JSON of {command, params}. */
export function cellId(command: string, params: Record<string, unknown>): string {
  return idOfCanonical(command, canonicalJson(params));
}

/** `cellId` from the canonical JSON of the params ("command" sorts before "params"). */
export function idOfCanonical(command: string, canonicalParams: string): string {
  return createHash('sha256').update(`{"command":${JSON.stringify(command)},"params":${canonicalParams}}`).digest('hex').slice(0, 16);
}

/** The seed of a cell without a `seed` parameter: 53 bits of SHA-256("<sweep seed>/<id>"). */
export function derivedSeed(sweepSeed: number, id: string): number {
  const hex = createHash('sha256').update(`${sweepSeed}/${id}`).digest('hex').slice(0, 14);
  return Number(BigInt(`0x${hex}`) >> 3n);
}
