/**
 * Scenarios: the JSON file format, its validation, the built-in scenarios, and compilation to the
 * numeric form the engines consume (`CompiledScenario`, see compiled.ts).
 *
 * The format is documented in docs/scenario-format.md and described by schema/scenario.schema.json.
 * Everything is validated before any computation; an invalid scenario is refused with a
 * `ScenarioError` naming the offending field as a JSON path and the reason.
 *
 * Modules: types (the Scenario type), json-text (JSON with positions, via yaml), load (file/text),
 * validate (structure and semantics), contexts (state-space size and budget), compile, builtins.
 */
export * from './types.js';
export { ScenarioError, type ScenarioErrorCode } from './error.js';
export { formatPath, suggest } from './check.js';
export { estimateScenarioSize } from './contexts.js';
export { parseScenario, scenarioToJson } from './validate.js';
export { compileScenario } from './compile.js';
export { loadScenarioFile, parseScenarioText } from './load.js';
export { jsonErrorPosition } from './json-text.js';
export { builtinNames, builtinScenario, randomScenario } from './builtins.js';
