/** The commands a sweep cell can run (apart from ts/commands/index.ts, which the report's own command imports: no cycle). */
import { analyze } from './analyze.js';
import { attack } from './attack.js';
import { estimate } from './estimate.js';
import { train } from './train.js';

export const cellCommands = { analyze, estimate, train, attack } as const;
