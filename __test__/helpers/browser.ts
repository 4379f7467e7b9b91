/**
 * Headless Chromium for the tests that open a report. Without Chromium the browser tests are skipped
 * with a visible message, except under CI (CI set and not "false"), where they run and fail: CI
 * installs it (.ci/run), so its absence there is a broken setup, not a reason to skip.
 */
import { existsSync } from 'node:fs';
import type { ExecutionContext, TestFn } from 'ava';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const underCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
/** Whether the browser tests run (Chromium found, or CI, where they must). */
export const browserTestsRun = existsSync(CHROMIUM) || underCi;
export const SKIP_MESSAGE = `Chromium not found at ${CHROMIUM}: browser tests skipped (install Debian's chromium or set CHROMIUM_PATH; under CI=true they run and fail)`;

if (!browserTestsRun) process.stderr.write(`\n  ⚠ ${SKIP_MESSAGE}\n\n`);

/** `test`, or `test.skip` (with the message above) when Chromium is absent outside CI. */
export function browserTest<C>(test: TestFn<C>): TestFn<C>['serial'] | TestFn<C> {
  return browserTestsRun ? test : (test.skip as unknown as TestFn<C>);
}

/** Launches Chromium; under CI without it, fails the test with the reason. */
export async function launchBrowser(t: ExecutionContext<unknown>): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) {
    t.fail(`Chromium not found at ${CHROMIUM} (install Debian's chromium, or set CHROMIUM_PATH)`);
    return null;
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
