/** The commander program, built from the command declarations (ts/commands/). */
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { commands } from '../commands/index.js';
import type { CommandDeclaration, Param, Params } from '../commands/declare.js';
import { createContext } from '../commands/context.js';
import { claimOutputFolder } from '../io/files.js';
import { Progress } from '../io/progress.js';
import { writeStdout, writeStdoutJson } from '../io/stdout.js';
import { HarmHorizonError } from '../core/errors.js';
import { exitCodeOf, signalName, stopOnSignals } from './helpers.js';

/** A parser for commander: the parameter's check, its error as commander's usage error (exit 2). */
function parser(param: Param<unknown>) {
  return (text: string) => {
    try {
      return param.read(text);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function option(param: Param<unknown>, mandatory: boolean): Option {
  if (param.kind === 'flag') return new Option(param.flag, param.help);
  const o = new Option(`${param.flag} ${param.placeholder ?? '<value>'}`, param.help).argParser(parser(param));
  if (param.default !== undefined) o.default(param.default, param.defaultText ?? (Array.isArray(param.default) ? param.default.join(',') : undefined));
  return mandatory ? o.makeOptionMandatory() : o;
}

function argument(param: Param<unknown>): Argument {
  const name = `${param.flag}${param.variadic ? '...' : ''}`;
  const a = new Argument(param.required ? `<${name}>` : `[${name}]`, param.help);
  // A variadic argument's words are read as one list (in values()).
  if (!param.variadic) a.argParser(parser(param));
  if (param.default !== undefined) a.default(param.default);
  return a;
}

/** The values of a run: the positional arguments by name, then the options by key. */
function values(params: Params, args: unknown[], opts: Record<string, unknown>): Record<string, unknown> {
  const positional = Object.keys(params).filter((k) => params[k].positional);
  const out: Record<string, unknown> = {};
  positional.forEach((key, i) => (out[key] = params[key].variadic ? params[key].read(args[i]) : args[i]));
  for (const key of Object.keys(params)) {
    if (params[key].positional) continue;
    // `--no-html` is commander's `html`.
    const name = params[key].kind === 'flag' && params[key].flag.startsWith('--no-') ? key.replace(/^no(.)/, (_, c: string) => c.toLowerCase()) : key;
    if (opts[name] !== undefined) out[key] = params[key].kind === 'flag' ? opts[name] === true : opts[name];
    if (params[key].kind === 'flag' && out[key] === undefined) out[key] = params[key].default;
  }
  return out;
}

/** Adds a declared command (under `parent`, found or made from the declaration's first words). */
export function addDeclaredCommand<P extends Params, R>(program: Command, declaration: CommandDeclaration<P, R>): Command {
  const words = declaration.name.split(' ');
  let parent = program;
  for (const word of words.slice(0, -1)) parent = parent.commands.find((c) => c.name() === word) ?? parent.command(word);
  const command = parent.command(words[words.length - 1]).description(declaration.description);
  const requires = new Set<string>(declaration.commandLineRequires ?? []);
  for (const [key, param] of Object.entries(declaration.params)) {
    if (param.positional) command.addArgument(argument(param));
    else command.addOption(option(param, param.required === true || requires.has(key)));
  }
  if (declaration.writesOutFolder) {
    // Refused when it holds another run's results, and locked for the run.
    command.option('--force', 'write over the results another run left in --out').hook('preAction', (c) => {
      const opts = c.opts<{ out: string; force?: boolean }>();
      claimOutputFolder(opts.out, { force: opts.force });
    });
  }
  command.option('--json', 'print the result as one JSON object');
  if (declaration.helpAfter) command.addHelpText('after', declaration.helpAfter);
  command.action(async (...args: unknown[]) => {
    const opts = (args[args.length - 1] as Command).opts<Record<string, unknown>>();
    const tty = process.stderr.isTTY === true;
    const signals = stopOnSignals(declaration.stopSignals, declaration.onStop);
    let shown = false;
    const context = createContext({
      stoppedBy: signals.stoppedBy,
      signal: signals.signal,
      status: (line) => {
        if (!tty) return;
        process.stderr.write(`\r${line}   `);
        shown = true;
      },
      progress: (label, total) => new Progress(label, total, tty),
      // On a terminal the progress bar names the stage.
      stage: (line) => {
        if (!tty) process.stderr.write(`${declaration.name}: ${line}\n`);
      },
      warn: (message) => process.stderr.write(`harm-horizon: ${message}\n`),
    });
    let result: R;
    try {
      result = await declaration.run(values(declaration.params, args.slice(0, -2), opts) as never, context);
    } catch (error) {
      const stoppedBy = signals.stoppedBy();
      if (!(stoppedBy && error instanceof HarmHorizonError && error.code === 'HH_ABORTED')) throw error;
      process.stderr.write(`harm-horizon: ${declaration.name} stopped by ${signalName(stoppedBy)} before it finished; nothing was written\n`);
      process.exitCode = exitCodeOf(stoppedBy);
      return;
    } finally {
      signals.release();
      if (shown) process.stderr.write('\n');
    }
    const failure = declaration.failure?.(result);
    // A failure's message goes to stderr (the CLI's error line), after the result on stdout.
    if (opts.json) writeStdoutJson(result);
    else {
      const text = declaration.render(result);
      if (text !== '') writeStdout(text);
    }
    for (const warning of declaration.warnings?.(result) ?? []) process.stderr.write(`warning: ${warning}\n`);
    if (failure) throw failure;
    const code = declaration.exitCode?.(result) ?? 0;
    if (code !== 0) process.exitCode = code;
  });
  return command;
}

/** The whole command line: one commander command per declaration (ts/commands/). */
export function buildProgram(): Command {
  const program = new Command('harm-horizon')
    .description('Shallow versus deep safety alignment, computable: the harm martingale, harm information and per-position gradients.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    // Help and version go through the checked writer too (`--help > /dev/full` is exit 1, one line).
    .configureOutput({ writeOut: writeStdout });
  for (const declaration of commands) addDeclaredCommand(program, declaration);
  program.commands.find((c) => c.name() === 'scenario')?.description('list, show and validate scenarios');
  return program;
}
