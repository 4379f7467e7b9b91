/** What the CLI does around a declared command's run: stopping on signals. */
import type { StopBehaviour } from '../commands/declare.js';

/**
 * The first of `signals` asks a long run to stop: after its current step (`after-step`), or by
 * aborting `signal` (`abort`); without either it leaves at once. A second one leaves at once
 * (exit 130 for Ctrl-C, 143 for SIGTERM).
 */
export function stopOnSignals(
  signals: readonly NodeJS.Signals[] = ['SIGINT'],
  behaviour?: StopBehaviour,
): { stoppedBy: () => NodeJS.Signals | null; signal: AbortSignal; release: () => void } {
  let stop: NodeJS.Signals | null = null;
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop !== null || !behaviour) process.exit(exitCodeOf(signal));
    stop = signal;
    const name = signalName(signal);
    process.stderr.write(`\n${name}: stopping ${behaviour === 'after-step' ? 'after the current step' : 'the computation'} (${name} again to quit at once) …\n`);
    controller.abort();
  };
  for (const signal of signals) process.on(signal, onSignal);
  return {
    stoppedBy: () => stop,
    signal: controller.signal,
    release: () => {
      for (const signal of signals) process.off(signal, onSignal);
    },
  };
}

/** The exit code of a run stopped by `signal` (128 + its number, as shells report it). */
export function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

export function signalName(signal: NodeJS.Signals): string {
  return signal === 'SIGINT' ? 'Ctrl-C' : signal;
}
