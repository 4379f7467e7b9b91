// Analyse a custom scenario file exactly: the harm information I_t per position, the horizon and
// the gradient norms against their bound. Run after the build: node examples/analyze-scenario.mjs
import { fileURLToPath } from 'node:url';
import { ExactEngine, compileScenario, loadScenarioFile } from 'harm-horizon';

const file = fileURLToPath(new URL('./scenarios/three-token.json', import.meta.url));
const scenario = compileScenario(loadScenarioFile(file));
const engine = new ExactEngine(scenario);
const profile = engine.harmProfile(); // the base model's harm martingale

console.log(`${scenario.name}: ${engine.numStates} exact states, T = ${scenario.length}`);
console.log(`E[H] = ${profile.expectedHarm.toFixed(6)}, Var(H) = ${profile.harmVariance.toFixed(6)}, horizon k = ${profile.horizon}`);
for (let t = 1; t <= scenario.length; t++) {
  const i = t - 1;
  console.log(`t=${t}  I_t=${profile.harmInformation[i].toFixed(6)}  |G_t|=${profile.gradNorm[i].toFixed(6)}  bound=${profile.gradBound[i].toFixed(6)}`);
}
const sum = profile.harmInformation.reduce((a, b) => a + b, 0);
console.log(`sum I_t = ${sum.toFixed(6)} (= Var(H))`);
