#!/usr/bin/env node
/**
 * The harm-horizon command line. Exit codes: 0 success, 1 a failure of the run, 2 bad usage or bad
 * input (the message names the bad field).
 */
import { Command, CommanderError } from 'commander';
import { commands } from '../commands/index.js';
import { isBadInput } from '../commands/exit-codes.js';
import { HarmHorizonError } from '../core/errors.js';
import { writeStdout } from '../io/stdout.js';
import { addDeclaredCommand } from './program.js';

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

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  for (const command of program.commands.flatMap((c) => [c, ...c.commands])) command.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
    }
    if (error instanceof HarmHorizonError) {
      process.stderr.write(`harm-horizon: ${error.message}\n`);
      return isBadInput(error) ? 2 : 1;
    }
    process.stderr.write(`harm-horizon: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}

main(process.argv).then((code) => {
  // An action may have set its own code (130 after Ctrl-C); keep it.
  process.exitCode ||= code;
});
