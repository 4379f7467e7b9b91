#!/usr/bin/env node
/**
 * The harm-horizon command line. Exit codes: 0 success, 1 a failure of the run, 2 bad usage or bad
 * input (the message names the bad field).
 */
import { CommanderError } from 'commander';
import { isBadInput } from '../commands/exit-codes.js';
import { HarmHorizonError } from '../core/errors.js';
import { buildProgram } from './program.js';

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
