/** The command line that reproduces a run: from a declaration and its values (used by the demo and train). */
import type { CommandDeclaration, Params, ValuesOf } from './declare.js';

/** A word the shell reads as itself, else single-quoted. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * `harm-horizon <name> <positionals> --flag value …`: the positional arguments, then every option
 * that differs from its default, in the declaration's order. A flag that defaults to true
 * (`--no-html`) is written when false.
 */
export function commandLine<P extends Params>(declaration: CommandDeclaration<P, unknown>, values: Partial<ValuesOf<P>>): string {
  const words = ['harm-horizon', ...declaration.name.split(' ')];
  const options: string[] = [];
  for (const [key, param] of Object.entries(declaration.params)) {
    const value = (values as Record<string, unknown>)[key];
    if (value === undefined) continue;
    // Positional arguments are always written: the line names what it runs on.
    if (param.positional) words.push(...(Array.isArray(value) ? value.map(String) : [String(value)]));
    else if (JSON.stringify(value) === JSON.stringify(param.default)) continue;
    // A flag that differs from its default is given (`--quiet`; `--no-html` defaults to true).
    else if (param.kind === 'flag') options.push(param.flag);
    else options.push(param.flag, Array.isArray(value) ? value.join(',') : String(value));
  }
  return [...words, ...options].map(shellWord).join(' ');
}
