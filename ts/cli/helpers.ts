/** What the CLI does around a declared command's run: stopping on signals. */

/**
 * The first of `signals` asks a long run to stop after its current step; a second one leaves at once
 * (exit 130 for Ctrl-C, 143 for SIGTERM).
 */
export function stopOnSignals(signals: readonly NodeJS.Signals[] = ['SIGINT']): { stoppedBy: () => NodeJS.Signals | null; release: () => void } {
  let stop: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop !== null) process.exit(signal === 'SIGTERM' ? 143 : 130);
    stop = signal;
    const name = signal === 'SIGINT' ? 'Ctrl-C' : signal;
    process.stderr.write(`\n${name}: stopping after the current step (${name} again to quit at once) …\n`);
  };
  for (const signal of signals) process.on(signal, onSignal);
  return {
    stoppedBy: () => stop,
    release: () => {
      for (const signal of signals) process.off(signal, onSignal);
    },
  };
}
