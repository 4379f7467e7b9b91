/**
 * Rollout logs in a report: a log (`harm-horizon rollouts`, `import`) is profiled as `harm-horizon
 * profile` does (same defaults: 200 bootstrap replicates, seed 0), or a saved `profile --json` output
 * is read; either becomes a section with the profile's plots, its tables and its findings.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { HarmHorizonError } from '../core/errors.js';
import { num } from './format.js';
import { LOG_FORMAT, readLog } from '../logs/format.js';
import { profileLog, type LogProfile } from '../logs/profile.js';
import { plotsForProfile } from './profile-plots.js';
import { profileFindings } from './profile-findings.js';
import type { Section, Table } from './types.js';

export interface ProfileInput {
  label: string;
  file: string;
  /** Model ids of the policy and the reference, and the judge. */
  model: { policy: string; reference: string; judge: string };
  profile: LogProfile;
  /** The command line that reproduces the profile. */
  command: string;
}

/** Whether a file starts with a rollout log's header (reads only its first line). */
export function isRolloutLog(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buffer = Buffer.alloc(4096);
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    const first = buffer.subarray(0, n).toString('utf8').split('\n')[0];
    return first.includes(`"${LOG_FORMAT}"`) && /"type"\s*:\s*"header"/.test(first);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A label for a log: its file name, or its folder's name for a runner's DIR/log.jsonl. */
function logLabel(path: string): string {
  const name = basename(path).replace(/\.jsonl$/i, '');
  return name === 'log' ? basename(dirname(resolve(path))) : name;
}

/** Reads and profiles a rollout log (a bad log throws the log validator's coded error, naming the record). */
export function profileInput(path: string): ProfileInput {
  const log = readLog(path);
  const h = log.header;
  return {
    label: logLabel(path),
    file: path,
    model: { policy: h.policy, reference: h.reference, judge: `${h.judge.name} (${h.judge.scores})` },
    profile: profileLog(log),
    command: `harm-horizon profile ${path} --json`,
  };
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Whether a parsed JSON value is `harm-horizon profile --json` output. */
export function isProfileJson(value: unknown): boolean {
  return isObject(value) && Array.isArray(value.klProfile) && Array.isArray(value.positions) && Array.isArray(value.prefill);
}

/** A saved `profile --json` output; its fields are checked where the report reads them. */
export function parseProfileJson(value: unknown, file: string): ProfileInput {
  const bad = (field: string, what: string) => new HarmHorizonError('HH_INVALID_ARGUMENT', `${file}: ${field} must be ${what} (the output of harm-horizon profile --json)`, field);
  if (!isObject(value) || !isProfileJson(value)) throw bad('klProfile', 'an array');
  const p = value as unknown as LogProfile;
  p.klProfile.forEach((r, i) => {
    if (!isObject(r) || typeof r.t !== 'number' || typeof r.klOnPolicy !== 'number' || typeof r.klOnPolicySE !== 'number') throw bad(`klProfile[${i}]`, 'an object with numbers t, klOnPolicy, klOnPolicySE');
  });
  p.positions.forEach((r, i) => {
    if (!isObject(r) || typeof r.tStart !== 'number' || typeof r.tEnd !== 'number' || typeof r.klOnPolicy !== 'number') throw bad(`positions[${i}]`, 'an object with numbers tStart, tEnd, klOnPolicy');
  });
  p.prefill.forEach((r, i) => {
    if (!isObject(r) || typeof r.k !== 'number' || typeof r.asr !== 'number' || typeof r.asrSE !== 'number') throw bad(`prefill[${i}]`, 'an object with numbers k, asr, asrSE');
  });
  if (!Array.isArray(p.conditionalHarm)) throw bad('conditionalHarm', 'an array');
  const text = (x: unknown, fallback: string) => (typeof x === 'string' ? x : fallback);
  const v = value as Record<string, unknown>;
  const log = text(v.log, file);
  return {
    label: basename(file).replace(/\.json$/i, ''),
    file,
    model: { policy: text(v.policy, 'policy'), reference: text(v.reference, 'reference'), judge: text(v.judge, 'the log\'s judge') },
    profile: p,
    command: `harm-horizon profile ${log} --json`,
  };
}

const pm = (x: number | null, se: number | null) => (x === null ? null : `${num(x)} ± ${num(se)}`);
const few = (low: boolean) => (low ? 'few samples' : '');

function tables(p: LogProfile): Table[] {
  const out: Table[] = [
    {
      caption: `Per-position KL (on-policy: exact from full distributions where the log has them, else k3; teacher-forced: ${p.klTeacherForcedKind})`,
      header: ['t', 'on-policy D_t', 'k1', 'k3', 'teacher-forced', ''],
      rows: p.klProfile.map((r) => [r.t, pm(r.klOnPolicy, r.klOnPolicySE), pm(r.k1, r.k1SE), pm(r.k3, r.k3SE), pm(r.klTeacherForced, r.klTeacherForcedSE), few(r.lowSupport)]),
      collapsed: p.klProfile.length > 16,
    },
  ];
  if (p.harmInformationModel !== null) {
    out.push({
      caption: 'Harm information I and on-policy KL D, summed over each block of rollout depths',
      header: ['positions', 'I', 'D (sum)', 'support', ''],
      rows: p.positions.map((r) => [r.tStart === r.tEnd ? String(r.tStart) : `${r.tStart}–${r.tEnd}`, pm(r.harmInformation, r.harmInformationSE), pm(r.klOnPolicy, r.klOnPolicySE), r.harmInformationSupport === null ? null : num(r.harmInformationSupport, 0), few(r.lowSupport)]),
    });
  }
  if (p.prefill.length > 0) {
    out.push({
      caption: 'Prefilling attack: ASR by forced depth k, pass@n over repeated continuations',
      header: ['k', 'ASR', 'prefixes', ...p.prefill[0].passAt.map((x) => `pass@${x.attempts}`), ''],
      rows: p.prefill.map((r) => [r.k, pm(r.asr, r.asrSE), r.prefixes, ...r.passAt.map((x) => pm(x.value, x.se)), few(r.lowSupport)]),
    });
  }
  return out;
}

/** The section of one profiled log; `suffix` keeps plot names unique when the page holds several. */
export function profileSection(input: ProfileInput, suffix = ''): Section {
  const p = input.profile;
  const { policy, reference, judge } = input.model;
  const lede =
    `${p.prompts} prompt(s); ${p.records.policySamples} policy and ${p.records.referenceSamples} reference samples, ${p.records.rollouts} rollout sets, ${p.records.prefills} prefills; ` +
    `judge ${judge}. E[H]: policy ${pm(p.expectedHarm.policy, p.expectedHarm.policySE)}, reference ${pm(p.expectedHarm.reference, p.expectedHarm.referenceSE)}. ` +
    `SEs from ${p.bootstrap.replicates} cluster-bootstrap replicates over prompts (seed ${p.bootstrap.seed}).`;
  return {
    id: `profile${suffix}`,
    title: `Rollout log: ${input.label} (${policy} against ${reference})`,
    intro: lede.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!),
    plots: plotsForProfile(p, { policy, reference }).map((plot) => ({ ...plot, name: `${plot.name}${suffix}` })),
    tables: tables(p),
  };
}

/** The findings of the profiled logs, each prefixed by its log's label when there are several. */
export function profilesFindings(inputs: ProfileInput[]): string[] {
  return inputs.flatMap((input) => profileFindings(input.profile, input.model).map((line) => (inputs.length > 1 ? `${input.label}: ${line}` : line)));
}
