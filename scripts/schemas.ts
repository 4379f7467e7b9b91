/**
 * The published JSON Schemas (schema/*.json) are generated from the TypeBox declarations that the
 * code checks files with, so they cannot drift: `npm run schemas` rewrites them, and
 * __test__/schemas.spec.ts fails if a committed file differs from what this produces.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PolicyFileSchema } from '../ts/io/policy-file.ts';
import { LogRecordSchema } from '../ts/logs/format.ts';
import { ScenarioFileSchema } from '../ts/scenario/types.ts';
import { SweepFileSchema } from '../ts/sweep/spec-schema.ts';

const DRAFT = 'https://json-schema.org/draft/2020-12/schema';

/** File name under schema/ → its text. JSON.stringify drops TypeBox's symbol-keyed metadata. */
export function publishedSchemas(): Record<string, string> {
  const text = (schema: object) => `${JSON.stringify({ $schema: DRAFT, ...schema }, null, 2)}\n`;
  return {
    'policy.schema.json': text(PolicyFileSchema),
    'rollout-log.schema.json': text(LogRecordSchema),
    'scenario.schema.json': text(ScenarioFileSchema),
    'sweep-spec.schema.json': text(SweepFileSchema),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [name, text] of Object.entries(publishedSchemas())) {
    writeFileSync(new URL(`../schema/${name}`, import.meta.url), text);
    console.log(`wrote schema/${name}`);
  }
}
