/** The `sweep` command(s). (Placeholder: filled in by the workbench work.) */
import type { Command } from 'commander';
import type { CliHelpers } from './commands-train.js';

export function addSweepCommands(program: Command, h: CliHelpers): void {
  void program;
  void h;
}
