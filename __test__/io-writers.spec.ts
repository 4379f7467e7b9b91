/**
 * The one atomic writer and the one JSON-lines appender (ts/io/): a failed write leaves the old
 * file as it was, a torn last line is cut back on resume, and a failed append leaves whole lines.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAtomic } from '../ts/io/atomic.js';
import { JsonLinesWriter } from '../ts/io/jsonl.js';
import { smallDisk } from './helpers/small-disk.js';

const scratch = mkdtempSync(join(tmpdir(), 'hh-io-'));

test('writeAtomic replaces a file whole', (t) => {
  const path = join(scratch, 'whole.json');
  writeAtomic(path, 'old\n');
  writeAtomic(path, 'new\n');
  t.is(readFileSync(path, 'utf8'), 'new\n');
  t.false(existsSync(`${path}.tmp`));
});

test('a failed atomic write (disk full) leaves the old file intact and no temporary file', (t) => {
  if (!existsSync('/dev/full')) {
    t.log('skipped: no /dev/full on this system');
    t.pass();
    return;
  }
  const path = join(scratch, 'kept.json');
  writeFileSync(path, '{"old": true}\n');
  // The temporary file lands on /dev/full, where every write fails with ENOSPC.
  symlinkSync('/dev/full', `${path}.tmp`);
  const error = t.throws(() => writeAtomic(path, `${'x'.repeat(100_000)}\n`));
  t.is((error as { code?: string }).code, 'HH_WRITE_FAILED');
  t.regex(error!.message, /kept\.json: the disk is full \(ENOSPC: no space left on device/);
  t.is(readFileSync(path, 'utf8'), '{"old": true}\n');
  t.false(existsSync(`${path}.tmp`));
});

test('JsonLinesWriter starts a new file, or resumes one with its torn last line cut back', (t) => {
  const path = join(scratch, 'log.jsonl');
  const fresh = new JsonLinesWriter(path);
  fresh.append({ step: 1 });
  fresh.append({ step: 2 });
  fresh.close();
  const whole = readFileSync(path, 'utf8');
  t.is(whole, '{"step":1}\n{"step":2}\n');
  // A kill mid-write leaves a partial line; resuming keeps the whole lines only.
  writeFileSync(path, `${whole}{"step":3, "torn`);
  const resumed = new JsonLinesWriter(path, { keep: Buffer.byteLength(whole), durable: true });
  t.is(readFileSync(path, 'utf8'), whole, 'the torn line is cut back before anything is appended');
  resumed.appendLines(['{"step":3}', '{"step":4}']);
  resumed.close();
  t.deepEqual(
    readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).step),
    [1, 2, 3, 4],
  );
  // Without `keep` the file is started anew.
  new JsonLinesWriter(path).close();
  t.is(readFileSync(path, 'utf8'), '');
});

test('a failed append (disk full) leaves the earlier lines whole and names the file', (t) => {
  const disk = smallDisk(join(scratch, 'tmpfs'));
  if (!disk) {
    t.log('skipped: needs root and a mountable tmpfs');
    t.pass();
    return;
  }
  const mountPoint = disk.dir;
  try {
    const path = join(mountPoint, 'results.jsonl');
    const writer = new JsonLinesWriter(path, { durable: true, hint: 'free space and resume' });
    const line = { pad: 'y'.repeat(3000) };
    let written = 0;
    const error = t.throws(() => {
      for (;;) {
        writer.append({ n: written, ...line });
        written++;
      }
    });
    writer.close(false);
    t.regex(error!.message, /results\.jsonl: the disk is full \(ENOSPC: no space left on device, write\); free space and resume/);
    const text = readFileSync(path, 'utf8');
    t.true(text.endsWith('\n'), 'no partial line');
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    t.is(lines.length, written, 'every append that returned is kept, the failed one is not');
    t.true(written > 5);
  } finally {
    disk.release();
  }
});
