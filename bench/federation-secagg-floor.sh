#!/usr/bin/env bash
# The floor of a secure-aggregation round (part of scripts/bench federation; alone: scripts/bench
# federation-secagg): removing masks generated with the Octomil SDK's PRG (SHA-256 of seed ||
# u32be(i) per element), which every secure round must do for each survivor's self-mask and each
# dropped device's pairwise masks, however it is built. Timed natively, as wasm32 in Node (what
# an aggregator shard runs), and in the SDK's own Python, then extrapolated to the issue's rounds.
# The round close time of a secure round is not measured here: secure rounds are not served yet.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$EP_ROOT"
bench_dir="$EP_ROOT/.bench"
fl="$EP_ROOT/target/release/federation"
wasm_js="$bench_dir/fl-kernel-wasm/edgeplane_fl_kernel.js"
if [ ! -f "$wasm_js" ]; then
  ep_log "building the wasm32 kernel"
  cargo build --release -q -p edgeplane-fl-kernel --target wasm32-unknown-unknown
  wasm-bindgen --target nodejs --out-dir "$bench_dir/fl-kernel-wasm" \
    "$EP_ROOT/target/wasm32-unknown-unknown/release/edgeplane_fl_kernel.wasm"
fi
sdk_python="$("$EP_ROOT/scripts/sdk-venv")"
masks=4 elements=1000000 sdk_elements=100000
native="$("$fl" prg-floor "$masks" "$elements" --best-of 3)"
wasm="$(node bench/federation-kernel.mjs "$wasm_js" --prg "$masks" "$elements" --best-of 3)"
sdk="$("$sdk_python" - "$sdk_elements" <<'PY'
import json, sys, time
from importlib.metadata import version
from octomil.secagg.crypto import _pseudo_rand_gen
n = int(sys.argv[1])
best = min(
    (lambda t0: (_pseudo_rand_gen(bytes([r]) * 32, 1 << 32, n), time.perf_counter() - t0)[1])(time.perf_counter())
    for r in range(3)
)
print(json.dumps({"impl": f"Octomil SDK {version('octomil')} _pseudo_rand_gen (Python)", "masks": 1,
                  "elements": n, "seconds": best, "ns_per_element": best * 1e9 / n}))
PY
)"
python3 - "$native" "$wasm" "$sdk" <<'PY'
import json, sys
native, wasm, sdk = (json.loads(a) for a in sys.argv[1:4])
if native["checksum"] != wasm["checksum"]:
    print(f"native and wasm32 disagree: {native['checksum']} != {wasm['checksum']}"); sys.exit(1)
print()
print("## federation: secure aggregation floor (the SDK's PRG: one SHA-256 per mask element)")
print(f"{'implementation':<58} {'masks':>5} {'elements':>9} {'seconds':>8} {'ns/element':>10}")
for r in (native, wasm, sdk):
    print(f"{r['impl']:<58} {r['masks']:>5} {r['elements']:>9} {r['seconds']:>8.3f} {r['ns_per_element']:>10.1f}")
print(f"  wasm32 / native: {wasm['ns_per_element'] / native['ns_per_element']:.2f}x;"
      f" the SDK's Python / wasm32: {sdk['ns_per_element'] / wasm['ns_per_element']:.1f}x (same masks: the checksums of native and wasm32 agree)")
# A round removes one self-mask per survivor and, for each dropped device, its pairwise mask
# with every survivor: about n + dropped * n masks of D elements, split over the shards.
print("  floor of unmasking, from the wasm32 figure (masks = survivors + dropped x survivors):")
print(f"  {'round':<44} {'masks':>7} {'shards':>6} {'s per shard':>12} {'s on 1 core':>12}")
for n, d, dim, shards in ((20, 0, 1_000_000, 1), (20, 2, 1_000_000, 1), (50, 0, 1_000_000, 1), (50, 5, 1_000_000, 1),
                          (100, 0, 4_200_000, 16), (100, 10, 4_200_000, 16)):
    survivors = n - d
    m = survivors + d * survivors
    total = m * dim * wasm["ns_per_element"] / 1e9
    print(f"  N={n:<4} dropped={d:<3} D={dim:<9,} {'':<10} {m:>7} {shards:>6} {total / shards:>12.2f} {total:>12.2f}")
print("     a secure round's close time is to be compared with this floor (goal: within 1.5x) once")
print("     secure rounds are served; they are not yet, so no round is timed here.")
PY
