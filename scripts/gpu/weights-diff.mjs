// `node scripts/gpu/weights-diff.mjs a.safetensors b.safetensors`: the largest per-tensor difference of two saved
// models, relative to the tensor's largest value (GPU runs are not bitwise repeatable: embedding backward uses atomics).
import { readSafetensors } from '../../dist/src/safetensors.js';
const [a, b] = await Promise.all(process.argv.slice(2, 4).map((f) => readSafetensors(f)));
const f32 = (d) => new Float32Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));
let worst = 0, name = '';
for (const t of a.tensors) {
  const x = f32(t.data), y = f32(b.tensors.find((u) => u.name === t.name).data);
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) { num = Math.max(num, Math.abs(x[i] - y[i])); den = Math.max(den, Math.abs(x[i])); }
  if (den > 1e-6 && num / den > worst) { worst = num / den; name = t.name; }
}
console.log(`max relative difference ${worst.toExponential(2)} (${name || 'none'}) over ${a.tensors.length} tensors`);
