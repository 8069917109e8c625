// The FedAvg kernel compiled to wasm32, timed under Node (V8, the engine of a Workers isolate).
// By default each update's bytes are copied into wasm memory per fold (as R2 bytes are in a
// Worker), then parsed and folded into the f64 running sum. With --staged the four distinct
// updates are copied into wasm memory once, before the clock starts, so the figure is the fold
// alone: the same work the native `federation kernel` line times. --best-of R repeats the N
// folds R times on a fresh accumulator each and reports the fastest. Prints one JSON line.
// --check instead runs the fold against its scalar reference inside wasm32 (bit for bit on the
// f64 sums) and prints what it covered and found. --prg MASKS ELEMENTS times the secure
// rounds' floor inside wasm32: that many SDK-PRG masks removed from one accumulator.
//
// usage: node bench/federation-kernel.mjs KERNEL_JS INPUT_DIR N [--validate | --staged] [--best-of R]
//        node bench/federation-kernel.mjs KERNEL_JS --check CASES
//        node bench/federation-kernel.mjs KERNEL_JS --prg MASKS ELEMENTS [--best-of R]
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
const { WasmKernel, check_fold, prg_floor } = createRequire(import.meta.url)(path.resolve(args[0]));
const option = (flag) => (args.includes(flag) ? Number(args[args.indexOf(flag) + 1]) : undefined);

if (args.includes("--check")) {
  const [cases, elements, mismatches] = check_fold(20261201, option("--check"));
  console.log(JSON.stringify({ check: "wasm32 fold equals the scalar reference bit for bit", cases, elements, mismatches }));
  process.exit(0);
}

if (args.includes("--prg")) {
  const at = args.indexOf("--prg");
  const [masks, elements] = [Number(args[at + 1]), Number(args[at + 2])];
  let seconds = Infinity;
  let checksum;
  for (let r = 0; r < (option("--best-of") ?? 1); r++) {
    const [s, c] = prg_floor(masks, elements);
    seconds = Math.min(seconds, s);
    checksum = c;
  }
  console.log(JSON.stringify({
    impl: "edgeplane wasm32/Node (SDK PRG, mask removal)", masks, elements, seconds,
    ns_per_element: (seconds * 1e9) / (masks * elements), checksum,
  }));
  process.exit(0);
}

const [, dir, nArg] = args;
const validate = args.includes("--validate");
const staged = args.includes("--staged");
const runs = option("--best-of") ?? 1;
const n = Number(nArg);
const base = readFileSync(path.join(dir, "base.safetensors"));
const pool = [0, 1, 2, 3].map((k) => readFileSync(path.join(dir, `u${k}.safetensors`)));
const shas = pool.map((b) => createHash("sha256").update(b).digest("hex"));
const weight = (i) => 1 + ((i * 37) % 500);

let seconds = Infinity;
let checksum;
for (let r = 0; r < runs; r++) {
  const kernel = new WasmKernel(base);
  const handles = staged ? pool.map((u) => kernel.stage(u)) : [];
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const u = pool[i % 4];
    if (validate) kernel.validate(u, shas[i % 4], weight(i));
    if (staged) kernel.fold_staged(handles[i % 4], weight(i));
    else kernel.fold(u, weight(i));
  }
  seconds = Math.min(seconds, Number(process.hrtime.bigint() - start) / 1e9);
  checksum = kernel.checksum();
  kernel.free();
}
const label = validate ? "validate+fold" : staged ? "fold, update in wasm memory" : "fold, copying each update in";
console.log(JSON.stringify({
  impl: `edgeplane wasm32/Node (${label})`,
  n, runs, seconds, mb_per_s: (n * pool[0].length) / 1e6 / seconds,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024, checksum,
}));
