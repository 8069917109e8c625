// The FedAvg kernel compiled to wasm32, timed under Node (V8, the engine of a Workers isolate):
// each update's bytes are copied into wasm memory (as R2 bytes are in a Worker), then parsed and
// folded into the f64 running sum. Prints one JSON line.
//
// usage: node bench/federation-kernel.mjs KERNEL_JS INPUT_DIR N [--validate]
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";

const [kernelJs, dir, nArg] = process.argv.slice(2);
const validate = process.argv.includes("--validate");
const n = Number(nArg);
const { WasmKernel } = createRequire(import.meta.url)(path.resolve(kernelJs));
const base = readFileSync(path.join(dir, "base.safetensors"));
const pool = [0, 1, 2, 3].map((k) => readFileSync(path.join(dir, `u${k}.safetensors`)));
const shas = pool.map((b) => createHash("sha256").update(b).digest("hex"));
const weight = (i) => 1 + ((i * 37) % 500);

const kernel = new WasmKernel(base);
const start = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const u = pool[i % 4];
  if (validate) kernel.validate(u, shas[i % 4], weight(i));
  kernel.fold(u, weight(i));
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({
  impl: validate ? "edgeplane wasm32/Node (validate+fold)" : "edgeplane wasm32/Node (fold)",
  n, seconds, mb_per_s: (n * pool[0].length) / 1e6 / seconds,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024, checksum: kernel.checksum(),
}));
