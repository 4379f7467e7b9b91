/**
 * Text widths for headless rendering. Without a canvas, vega measures text with a crude estimate
 * (0.8 em per character), which makes plots much wider than their content. These are DejaVu Sans
 * advance widths (in hundredths of an em, measured in Chromium); fonts such as Helvetica or Arial
 * are narrower, so an SVG sized with them holds what a browser draws. render.ts hands this measure
 * to vega for the duration of each render.
 */
const WIDTH_CHARS = ' !"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~λΔΣ‖√·²≤≥≈∼→τ∂θμγ∈×−–—…αβ∞±';
const WIDTHS_REGULAR =
  '32,40,46,84,64,95,78,27,39,39,50,84,32,36,32,34,64,64,64,64,64,64,64,64,64,64,34,34,84,84,84,53,100,68,69,70,77,63,58,77,75,29,29,66,56,86,75,79,60,79,69,63,61,73,68,99,69,61,69,39,34,39,84,50,50,61,63,55,63,62,35,63,63,28,28,58,28,97,63,61,63,63,41,52,39,63,59,82,59,59,52,64,34,64,84,59,68,63,50,64,32,40,84,84,84,84,84,60,52,61,64,59,87,84,84,50,100,100,66,64,83,84';
const WIDTHS_BOLD =
  '35,46,52,84,70,100,87,31,46,46,52,84,38,42,38,37,70,70,70,70,70,70,70,70,70,70,40,40,84,84,84,58,100,77,76,73,83,68,68,82,84,37,37,77,64,100,84,85,73,85,77,72,68,81,77,110,77,72,73,46,37,46,84,50,50,67,72,59,72,68,44,72,71,34,34,67,34,104,71,69,72,72,49,60,48,71,65,92,65,65,58,71,37,71,84,63,77,68,50,67,38,44,84,84,84,84,84,64,54,69,74,68,90,84,84,50,100,100,69,72,83,84';

function widthTable(list: string): Map<string, number> {
  const widths = list.split(',').map((w) => Number(w) / 100);
  return new Map([...WIDTH_CHARS].map((c, i) => [c, widths[i]]));
}
const REGULAR = widthTable(WIDTHS_REGULAR);
const BOLD = widthTable(WIDTHS_BOLD);

/** The width in pixels of `text` drawn with `item`'s font size and weight, in DejaVu Sans. */
export function dejaVuTextWidth(item: { fontSize?: number; fontWeight?: string | number }, text: unknown): number {
  const value = text == null ? '' : String(text).trim();
  const size = item.fontSize != null ? +item.fontSize || 0 : 11;
  const bold = item.fontWeight === 'bold' || Number(item.fontWeight) >= 600;
  const table = bold ? BOLD : REGULAR;
  let em = 0;
  // Combining marks (the bar of F̄) take no width; other characters not in the table count as wide.
  for (const c of value) em += /\p{M}/u.test(c) ? 0 : (table.get(c) ?? 0.75);
  return Math.ceil(em * size * 1.02);
}
