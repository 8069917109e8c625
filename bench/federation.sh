#!/usr/bin/env bash
# The federated-learning section of scripts/bench (sourced env: EP_ROOT, EP_STACK_FILE,
# EP_BENCH_PID, EP_BENCH_RUNTIME). Prints, side by side in one run:
#   1. the aggregation kernel — ours natively and as wasm32 (built with simd128, see
#      .cargo/config.toml) in Node, Flower's own FedAvg `aggregate_inplace`, and a numpy streaming
#      fold — on one MobileNet-sized model (4.2M float32 parameters, 16.8 MB per update) for
#      N = 100 and 300 (ours and numpy also 1000): seconds, MB/s, peak RSS, each process alone;
#   2. the fold against this machine's memory bandwidth: a STREAM-style triad and the fold over
#      arrays far larger than the cache, the wasm32 fold against the native one (best of several
#      runs each, on one thread), and a bit-for-bit check of the wasm32 fold against its scalar
#      reference;
#   3. a whole round end to end through the stack: updates/s, MB/s ingested, round-close latency,
#      workerd memory.
# Figures only; goals are printed as MET/MISS with the measured value, never asserted.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$EP_ROOT"
bench_dir="$EP_ROOT/.bench"          # git-ignored: venv, inputs, the wasm build
inputs="$bench_dir/federation"
venv="$bench_dir/venv"
fl="$EP_ROOT/target/release/federation"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import flwr, numpy' 2>/dev/null; then
  ep_log "installing Flower and numpy into $venv (bench only)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q flwr numpy
fi
ep_log "building the wasm32 kernel"
cargo build --release -q -p edgeplane-fl-kernel --target wasm32-unknown-unknown
wasm-bindgen --target nodejs --out-dir "$bench_dir/fl-kernel-wasm" \
  "$EP_ROOT/target/wasm32-unknown-unknown/release/edgeplane_fl_kernel.wasm"
"$fl" make-updates "$inputs"

results="$(mktemp)"
run() { "$@" >>"$results" || echo "{\"impl\": \"$*\", \"error\": true}" >>"$results"; }
wasm_js="$bench_dir/fl-kernel-wasm/edgeplane_fl_kernel.js"
for n in 100 300 1000; do
  run env FL_BENCH_DIR="$inputs" "$fl" kernel "$n"
  run env FL_BENCH_DIR="$inputs" "$fl" kernel "$n" --batch 8
  run node bench/federation-kernel.mjs "$wasm_js" "$inputs" "$n"
  run node bench/federation-kernel.mjs "$wasm_js" "$inputs" "$n" --staged
  run "$venv/bin/python" bench/federation_reference.py numpy "$inputs" "$n"
done
for n in 100 300; do
  run "$venv/bin/python" bench/federation_reference.py flower "$inputs" "$n"
done
run env FL_BENCH_DIR="$inputs" "$fl" kernel 100 --validate
run node bench/federation-kernel.mjs "$wasm_js" "$inputs" 100 --validate

# The fold against the machine: every figure is the fastest of several runs, and the runs of
# the implementations compared are interleaved (other work may share the cores, and a burst of
# it should not land on one side only). The bench model at N = 100.
bandwidth="$(mktemp)"
ep_log "memory bandwidth: STREAM triad and the fold over arrays beyond the cache, interleaved"
bw() { "$@" >>"$bandwidth" || echo "{\"impl\": \"$*\", \"error\": true}" >>"$bandwidth"; }
bw "$fl" bandwidth --runs 10
for round in 1 2 3 4 5; do
  bw env FL_BENCH_DIR="$inputs" "$fl" kernel 100 --best-of 2
  bw node bench/federation-kernel.mjs "$wasm_js" "$inputs" 100 --staged --best-of 2
  bw node bench/federation-kernel.mjs "$wasm_js" "$inputs" 100 --best-of 2
  bw env FL_BENCH_DIR="$inputs" "$fl" kernel 100 --batch 8 --best-of 2
done
bw "$fl" bandwidth --runs 10
bw node bench/federation-kernel.mjs "$wasm_js" --check 2000

e2e="$(mktemp)"
ep_log "end to end: one round of ${FL_E2E_UPDATES:-100} updates through the stack"
"$fl" e2e "${FL_E2E_UPDATES:-100}" "${FL_E2E_CONCURRENCY:-8}" >"$e2e"

python3 - "$results" "$e2e" "$(nproc)" "$bandwidth" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
e2e = json.loads(open(sys.argv[2]).read())
cores = sys.argv[3]
bw = [json.loads(l) for l in open(sys.argv[4]) if l.strip()]
flower = {r["n"]: r for r in rows if r.get("impl", "").startswith("Flower") and "seconds" in r}
print()
print("## federation: FedAvg aggregation kernel (4,214,000 float32 parameters, 16.86 MB per update)")
print(f"{'implementation':<54} {'N':>5} {'seconds':>9} {'MB/s':>8} {'peak RSS MB':>12} {'x Flower':>9}")
for r in rows:
    if "seconds" not in r:
        print(f"{r['impl']:<54} failed"); continue
    ref = flower.get(r["n"])
    ratio = f"{ref['seconds'] / r['seconds']:.2f}" if ref else "-"
    print(f"{r['impl']:<54} {r['n']:>5} {r['seconds']:>9.3f} {r['mb_per_s']:>8.0f} {r['peak_rss_mb']:>12.0f} {ratio:>9}")
def find(prefix, n):
    return next((r for r in rows if r.get("impl", "").startswith(prefix) and r.get("n") == n and "seconds" in r), None)
def goal(label, ok, detail):
    print(f"goal {label:<58} {'MET ' if ok else 'MISS'} ({detail})")
print()
for n in (100, 300):
    ours, batch, fl = find("edgeplane native (fold)", n), find("edgeplane native (fold, batches", n), flower.get(n)
    if ours and fl:
        goal(f"kernel >= 5x Flower, N={n}, one fold per update", fl["seconds"] / ours["seconds"] >= 5, f"{fl['seconds'] / ours['seconds']:.2f}x")
    if batch and fl:
        goal(f"kernel >= 5x Flower, N={n}, batched fold (8)", fl["seconds"] / batch["seconds"] >= 5, f"{fl['seconds'] / batch['seconds']:.2f}x")
o100, o1000 = find("edgeplane native (fold)", 100), find("edgeplane native (fold)", 1000)
if o100 and o1000:
    goal("kernel peak memory flat in N (N=1000 vs N=100)", o1000["peak_rss_mb"] <= o100["peak_rss_mb"] * 1.05,
         f"{o100['peak_rss_mb']:.0f} MB -> {o1000['peak_rss_mb']:.0f} MB")
if 100 in flower and 300 in flower:
    print(f"     Flower peak memory grows with N: {flower[100]['peak_rss_mb']:.0f} MB at N=100 -> {flower[300]['peak_rss_mb']:.0f} MB at N=300")

# Bytes counted per parameter per update the way STREAM counts its triad (bytes the loop reads
# plus bytes it writes; the cache's read of a line before writing it is not counted): the
# float32 element read (4), the f64 running sum read (8) and written (8). A batched fold reads
# and writes the sum once per batch, so 4 + 16 / batch.
def counted(r):
    return 4 + 16 / r.get("batch", 1)
# The fastest line of each implementation, with the runs of all its lines.
fastest = {}
for r in bw:
    if "seconds" in r and "impl" in r:
        f = fastest.get(r["impl"])
        total = r["runs"] + (f["runs"] if f else 0)
        faster = lambda a, b: a["gb_per_s"] > b["gb_per_s"] if "gb_per_s" in a else a["seconds"] < b["seconds"]
        if f is None or faster(r, f):
            fastest[r["impl"]] = dict(r)
        fastest[r["impl"]]["runs"] = total
def pick(prefix):
    return next((r for k, r in fastest.items() if k.startswith(prefix)), None)
triad, big_fold = pick("STREAM triad"), pick("edgeplane fold, float32")
native = pick("edgeplane native (fold)")
print()
print(f"## federation: the fold against this machine's memory bandwidth (1 thread; {cores} cores that other work may share;")
print("   each figure the fastest of its runs, the implementations' runs interleaved)")
if triad:
    print(f"  STREAM triad a[i] = b[i] + s*c[i], 3 f64 arrays x {triad['array_mb']:.0f} MB (last-level cache {triad['llc_mb']:.0f} MB),")
    print(f"    counted 24 B/element (2 read + 1 written), fastest of {triad['runs']} runs: {triad['gb_per_s']:.2f} GB/s")
if big_fold:
    print(f"  fold over as many elements (float32 x {big_fold['array_mb'] / 2:.0f} MB, f64 sum {big_fold['array_mb']:.0f} MB),")
    print(f"    counted 20 B/element (4 + 8 read, 8 written), fastest of {big_fold['runs']} runs: {big_fold['gb_per_s']:.2f} GB/s")
print(f"  the bench model (N=100, {native['params'] if native else 4214000:,} parameters per update), counted the same way:")
print(f"  {'implementation':<54} {'runs':>4} {'seconds':>8} {'MB/s':>7} {'B/param':>7} {'GB/s':>6} {'x triad':>7} {'x native':>8}")
for r in fastest.values():
    if "n" not in r:
        continue
    params = native["params"] if native else 4214000
    gbs = r["n"] * params * counted(r) / 1e9 / r["seconds"]
    xt = f"{gbs / triad['gb_per_s']:.2f}" if triad else "-"
    xn = f"{native['seconds'] / r['seconds']:.2f}" if native else "-"
    print(f"  {r['impl']:<54} {r['runs']:>4} {r['seconds']:>8.3f} {r['mb_per_s']:>7.0f} {counted(r):>7.0f} {gbs:>6.2f} {xt:>7} {xn:>8}")
if native and triad:
    working_mb = native["params"] * 8 / 1e6 + 4 * native["mb_per_s"] * native["seconds"] / native["n"]
    if working_mb < triad["llc_mb"]:
        print(f"  (the bench model's working set, the f64 sum and four distinct updates, {working_mb:.0f} MB, fits the"
              f" {triad['llc_mb']:.0f} MB last-level cache,")
        print("   so its x triad can pass 1; the goal below is judged on the arrays beyond the cache)")
staged, copied = pick("edgeplane wasm32/Node (fold, update in wasm memory)"), pick("edgeplane wasm32/Node (fold, copying")
if native and staged:
    goal("wasm32 fold >= 80% of native (update in wasm memory)", native["seconds"] / staged["seconds"] >= 0.8,
         f"{native['seconds'] / staged['seconds']:.0%}; same checksum: {'yes' if staged['checksum'] == native['checksum'] else 'NO'}")
if native and copied:
    goal("wasm32 fold >= 80% of native (copying each update in)", native["seconds"] / copied["seconds"] >= 0.8,
         f"{native['seconds'] / copied['seconds']:.0%}")
if triad and big_fold:
    goal("fold >= 80% of the triad bandwidth (beyond cache)", big_fold["gb_per_s"] >= 0.8 * triad["gb_per_s"],
         f"{big_fold['gb_per_s'] / triad['gb_per_s']:.0%}")
check = next((r for r in bw if "check" in r), None)
if check:
    print(f"check {check['check']}: {'OK' if check['mismatches'] == 0 else 'FAILED'} "
          f"({check['cases']} cases, {check['elements']:,} elements, {check['mismatches']} differing sums)")
else:
    print("check wasm32 fold against the scalar reference: did not run")
print()
print(f"## federation: one round end to end through the stack ({cores} cores, workerd via Miniflare)")
for k in ["n", "concurrency", "update_mb", "shards", "ingest_seconds", "updates_per_s", "mb_per_s", "update_p50_s",
          "update_p99_s", "round_close_seconds", "workerd_rss_mb_before", "workerd_rss_mb_after", "workerd_peak_rss_mb", "relative_error", "transport_retries"]:
    v = e2e.get(k)
    print(f"  {k:<26} {v:.4g}" if isinstance(v, float) else f"  {k:<26} {v}")
goal("end to end >= 100 MB/s of updates", e2e["mb_per_s"] >= 100, f"{e2e['mb_per_s']:.1f} MB/s")
# Bytes read back from R2 per byte uploaded, from the stack's own "r2 read" log lines (the
# gateway's validation when parts arrived out of order, each aggregator's fold).
import os
reads = {}
for log_path in [p for p in os.environ.get("EP_BENCH_STACK_LOG", "").split(":") if os.path.exists(p)]:
    for line in open(log_path, errors="replace"):
        at = line.find('{"level"')
        if at < 0 or '"r2 read"' not in line:
            continue
        try:
            fields = json.loads(line[at:])["fields"]
        except (ValueError, KeyError):
            continue
        reads[fields["purpose"]] = reads.get(fields["purpose"], 0) + fields["bytes"]
uploaded = e2e["n"] * e2e["update_mb"] * 1e6
if reads and uploaded:
    per_byte = sum(reads.values()) / uploaded
    print("  bytes read per byte uploaded: " + ", ".join(f"{k} {v / uploaded:.2f}" for k, v in sorted(reads.items())))
    goal("every uploaded byte read at most once after it is written", per_byte <= 1.0 + 1e-9, f"{per_byte:.2f} reads per byte")
else:
    print("  bytes read per byte uploaded: no 'r2 read' lines in the stack's log (EP_BENCH_STACK_LOG)")
print("     where the time goes: each update byte is written to R2 once (parts), validated as it streams in")
print("     and read once more by the fold in its aggregator, through workerd's local R2 on this disk, with")
print("     the load generator sharing the same cores; the kernel itself folds at GB/s (table above).")
PY
bash "$EP_ROOT/bench/federation-secagg-floor.sh"
E2E_UPDATE_P50_S="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["update_p50_s"])' "$e2e")" \
  bash "$EP_ROOT/bench/federation-control.sh"
rm -f "$results" "$e2e" "$bandwidth"
