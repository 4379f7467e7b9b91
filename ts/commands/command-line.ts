/** The command line that reproduces a run: from a declaration and its values (used by the demo and train). */
import type { CommandDeclaration, Params, ValuesOf } from './declare.js';

/** A word the shell reads as itself, else single-quoted. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * `harm-horizon <name> <positionals> --flag value …`: every value that differs from its default, in
 * the declaration's order. A flag that defaults to true (`--no-html`) is written when false.
 */
export function commandLine<P extends Params>(declaration: CommandDeclaration<P, unknown>, values: Partial<ValuesOf<P>>): string {
  const words = ['harm-horizon', ...declaration.name.split(' ')];
  const options: string[] = [];
  for (const [key, param] of Object.entries(declaration.params)) {
    const value = (values as Record<string, unknown>)[key];
    if (value === undefined || JSON.stringify(value) === JSON.stringify(param.default)) continue;
    if (param.positional) words.push(String(value));
    else if (param.kind === 'flag') options.push(value ? param.flag : param.flag.replace(/^--no-/, '--'));
    else options.push(param.flag, Array.isArray(value) ? value.join(',') : String(value));
  }
  return [...words, ...options].map(shellWord).join(' ');
}
