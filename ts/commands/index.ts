/** Every declared command, by name: the CLI, the sweep cells and the demo run these. */
import { analyze } from './analyze.js';
import type { AnyCommand } from './declare.js';
import { attack } from './attack.js';
import { demo } from './demo.js';
import { estimate } from './estimate.js';
import { importCommand } from './import.js';
import { profile, rollouts } from './logs.js';
import { report } from './report.js';
import { scenarioList, scenarioShow, scenarioValidate } from './scenario.js';
import { merge, sweep } from './sweep.js';
import { train } from './train.js';

export { analyze, attack, demo, estimate, importCommand, merge, profile, report, rollouts, scenarioList, scenarioShow, scenarioValidate, sweep, train };
export type { AttackResult } from './attack.js';
export type { TrainResult } from './train.js';

export { cellCommands } from './cells.js';

/** In the order of the CLI's help. */
export const commands: readonly AnyCommand[] = [analyze, estimate, train, attack, report, importCommand, scenarioList, scenarioShow, scenarioValidate, sweep, merge, demo, rollouts, profile];
