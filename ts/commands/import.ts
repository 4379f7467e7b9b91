/** `import`: provider outputs (vLLM, OpenAI-style, Hugging Face) → a rollout log. */
import { importLog } from '../logs/import.js';
import { declareCommand, oneOf, string } from './declare.js';

export const importCommand = declareCommand({
  name: 'import',
  description: 'convert provider outputs (vLLM, OpenAI-style chat completions, Hugging Face JSONL) into a rollout log',
  params: {
    provider: oneOf('provider', ['vllm', 'openai', 'hf'], 'vllm, openai or hf', { positional: true, required: true }),
    file: string('file', 'JSON lines: the rollout log header, then one sampled response per line in the provider\'s format (docs/rollout-log.md)', { positional: true, required: true }),
    out: string('--out <log>', 'the rollout log to write', { required: true }),
  },
  helpAfter: '\nExamples:\n  $ harm-horizon import vllm examples/logs/vllm-outputs.jsonl --out runs/vllm-log.jsonl\n  $ harm-horizon import hf examples/logs/hf-rollouts.jsonl --out runs/hf-log.jsonl',
  async run(p): Promise<{ log: string; records: number }> {
    return { log: p.out, records: importLog(p.provider, p.file, p.out) };
  },
  render: (r) => `wrote ${r.log} (${r.records} records)`,
});
