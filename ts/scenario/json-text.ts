/**
 * JSON text with positions, read through the `yaml` package (a maintained parser that keeps source
 * ranges). JSON.parse alone decides whether the text is valid JSON: yaml accepts a superset (single
 * quotes, trailing commas, comments), so yaml is used only to locate things — the first JSON syntax
 * error (from yaml's lexer tokens), repeated keys, and the line and column of every value.
 */
import { CST, isMap, isPair, isScalar, isSeq, Lexer, parseDocument, type Node as YamlNode } from 'yaml';

export type PathSegment = string | number;

/** A 1-based line and column, and the 0-based character offset they denote. */
export interface TextPosition {
  line: number;
  column: number;
  offset: number;
}

/** A JSON syntax error: the parser's message and, when it can be located, where. */
export class JsonSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly position: TextPosition | undefined,
  ) {
    super(reason);
    this.name = 'JsonSyntaxError';
  }
}

/** An object that repeats a key (JSON.parse would silently keep the last value). */
export class DuplicateKeyError extends Error {
  constructor(
    readonly path: PathSegment[],
    readonly key: string,
    readonly position: TextPosition | undefined,
  ) {
    super(`duplicate key ${JSON.stringify(key)} in a JSON object (each key may appear once)`);
    this.name = 'DuplicateKeyError';
  }
}

/** Parsed JSON and a way back from a path to where its value sits in the text. */
export interface JsonText {
  value: unknown;
  /** Position of the value at `path`, or of its deepest ancestor present in the text. */
  positionOf(path: readonly PathSegment[]): TextPosition | undefined;
}

export function positionAt(text: string, offset: number): TextPosition {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n'), offset };
}

/**
 * Parses JSON text (a leading BOM is skipped). Throws `JsonSyntaxError` if JSON.parse refuses it,
 * `DuplicateKeyError` if an object repeats a key.
 */
export function parseJsonText(text: string): JsonText {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const pos = jsonErrorPosition(text, (err as Error).message);
    throw new JsonSyntaxError((err as Error).message, pos === undefined ? undefined : positionAt(text, pos));
  }
  const doc = parseDocument(text, { uniqueKeys: false, schema: 'json', strict: true });
  // Valid JSON that yaml cannot read (e.g. an implicit key longer than 1024 characters) keeps its
  // value; only positions and the repeated-key check are then unavailable.
  if (doc.errors.length > 0 || doc.contents === null) return { value, positionOf: () => undefined };
  const root = doc.contents as YamlNode;
  checkDuplicateKeys(text, root, []);
  return { value, positionOf: (path) => locate(text, root, path) };
}

function nodeStart(n: unknown): number | undefined {
  return (n as { range?: [number, number, number] } | null)?.range?.[0];
}

function keyString(k: unknown): string {
  return isScalar(k) ? String(k.value) : String(k);
}

function checkDuplicateKeys(text: string, node: unknown, path: PathSegment[]): void {
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      const key = keyString(pair.key);
      const start = nodeStart(pair.key);
      if (seen.has(key)) throw new DuplicateKeyError([...path, key], key, start === undefined ? undefined : positionAt(text, start));
      seen.add(key);
      checkDuplicateKeys(text, pair.value, [...path, key]);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => checkDuplicateKeys(text, item, [...path, i]));
  }
}

function locate(text: string, root: YamlNode, path: readonly PathSegment[]): TextPosition | undefined {
  let node: unknown = root;
  for (const seg of path) {
    let next: unknown;
    if (isMap(node) && typeof seg === 'string') {
      next = node.items.find((p) => isPair(p) && keyString(p.key) === seg)?.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
    }
    if (next === undefined || next === null) break;
    node = next;
  }
  const start = nodeStart(node);
  return start === undefined ? undefined : positionAt(text, start);
}

// ---------------------------------------------------------------------------------------------
// Locating a syntax error

const JSON_NUMBER_PREFIX = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/;
const JSON_ESCAPE = /^\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/;
/** Lexer markers that stand for no source text. */
const ZERO_WIDTH = new Set(['doc-mode', 'scalar', 'flow-error-end']);
/** Token kinds that JSON allows (plain scalars are checked further). */
const JSON_TOKENS = new Set(['flow-map-start', 'flow-map-end', 'flow-seq-start', 'flow-seq-end', 'comma', 'map-value-ind', 'space', 'newline', 'double-quoted-scalar']);
const CLOSERS = new Set(['flow-map-end', 'flow-seq-end']);
const OPENERS = new Set(['flow-map-start', 'flow-seq-start']);

/** Offset of the first error inside one token that JSON forbids, or undefined if none. */
function tokenFault(tok: string, type: string | null): number | undefined {
  if (type === 'double-quoted-scalar') {
    for (let i = 1; i < tok.length - 1; i++) {
      const c = tok.charCodeAt(i);
      if (c < 0x20) return i;
      if (c === 0x5c) {
        if (!JSON_ESCAPE.test(tok.slice(i))) return i + 1;
        i += tok[i + 1] === 'u' ? 5 : 1;
      }
    }
    return undefined;
  }
  if (type === null) {
    if (tok === 'true' || tok === 'false' || tok === 'null') return undefined;
    const m = JSON_NUMBER_PREFIX.exec(tok);
    return m !== null && m[0].length === tok.length ? undefined : (m?.[0].length ?? 0);
  }
  return JSON_TOKENS.has(type) ? undefined : 0;
}

/**
 * Offset of the first syntax error in `text` under the strict JSON grammar, or undefined if the
 * text is valid JSON. JSON.parse's message gives the offset for most errors; yaml's lexer tokens
 * locate the ones V8 leaves without a position (trailing commas, single quotes, bad literals) and
 * the end of a truncated text.
 */
export function jsonErrorPosition(text: string, parseMessage?: string): number | undefined {
  if (parseMessage === undefined) {
    try {
      JSON.parse(text);
      return undefined;
    } catch (err) {
      parseMessage = (err as Error).message;
    }
  }
  const fromV8 = /position (\d+)/.exec(parseMessage);
  let found = fromV8 ? Number(fromV8[1]) : undefined;
  let offset = 0;
  let prev: string | null = null; // last token type other than space/newline
  for (const tok of new Lexer().lex(text)) {
    const type = CST.tokenType(tok);
    if (type !== null && ZERO_WIDTH.has(type)) continue;
    if (found !== undefined && offset >= found) break;
    const inner = tokenFault(tok, type);
    const misplacedComma = type === 'comma' && (prev === 'comma' || (prev !== null && OPENERS.has(prev)));
    const trailingComma = type !== null && CLOSERS.has(type) && prev === 'comma';
    const at = inner !== undefined ? offset + inner : misplacedComma || trailingComma ? offset : undefined;
    if (at !== undefined) {
      found = found === undefined ? at : Math.min(found, at);
      break;
    }
    if (type !== 'space' && type !== 'newline') prev = type;
    offset += tok.length;
  }
  return Math.min(found ?? text.length, text.length);
}
