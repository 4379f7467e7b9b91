/** Option parsers and output of the commands not yet declared in ts/commands/ (sweep, merge, report, demo, logs). */
import { InvalidArgumentError } from 'commander';
import { writeStdout, writeStdoutJson } from '../io/stdout.js';

export const write = writeStdout;
export const json = writeStdoutJson;

function parse(name: string, must: string, ok: (x: number) => boolean) {
  return (value: string) => {
    const x = Number(value);
    if (value.trim() === '' || !ok(x)) throw new InvalidArgumentError(`${name} must be ${must}.`);
    return x;
  };
}

export const nonNegative = (name: string) => parse(name, 'a finite number ≥ 0', (x) => Number.isFinite(x) && x >= 0);
export const positiveInteger = (name: string) => parse(name, 'a whole number ≥ 1', (x) => Number.isSafeInteger(x) && x >= 1);
export const integer = (name: string) => parse(name, 'a whole number ≥ 0', (x) => Number.isSafeInteger(x) && x >= 0);
export const unitInterval = (name: string) => parse(name, 'in (0, 1]', (x) => x > 0 && x <= 1);

/** Ctrl-C asks a long run to stop after its current step; a second one leaves at once (130). */
export function stopOnSigint(): { stopped: () => boolean; release: () => void } {
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after the current step (Ctrl-C again to quit at once) …\n');
  };
  process.on('SIGINT', onSigint);
  return { stopped: () => stop, release: () => process.off('SIGINT', onSigint) };
}
