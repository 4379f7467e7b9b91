/**
 * Progress on a terminal: a bar with count, rate and ETA on stderr, redrawn at most 10 times a
 * second; silent when stderr is not a terminal (CI logs, pipes) or when disabled.
 */
export class Progress {
  readonly #total: number;
  readonly #label: string;
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #done = 0;
  #lastDraw = 0;

  constructor(label: string, total: number, enabled = process.stderr.isTTY === true) {
    this.#label = label;
    this.#total = total;
    this.#enabled = enabled;
  }

  /** Marks `n` more units done (and redraws if due). */
  tick(n = 1, note = ''): void {
    this.#done += n;
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100 && this.#done < this.#total) return;
    this.#lastDraw = now;
    const seconds = (now - this.#started) / 1000;
    const rate = this.#done / Math.max(seconds, 1e-9);
    const eta = rate > 0 ? (this.#total - this.#done) / rate : Infinity;
    const width = 24;
    const filled = this.#total > 0 ? Math.round((width * this.#done) / this.#total) : 0;
    const bar = '█'.repeat(Math.min(filled, width)).padEnd(width, '·');
    process.stderr.write(`\r${this.#label} ${bar} ${this.#done}/${this.#total}  ${formatRate(rate)}  ETA ${formatSeconds(eta)} ${note}`.padEnd(80));
  }

  /** Ends the bar's line. */
  finish(): void {
    if (this.#enabled) process.stderr.write('\n');
  }
}

function formatRate(rate: number): string {
  return rate >= 10 ? `${rate.toFixed(0)}/s` : `${rate.toFixed(2)}/s`;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${Math.round(s % 60).toString().padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${Math.round((s % 3600) / 60).toString().padStart(2, '0')}m`;
}
