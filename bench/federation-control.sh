#!/usr/bin/env bash
# Device control under a fleet (part of scripts/bench federation; alone: scripts/bench
# federation-control): desired-state and sync req/s next to /livez with FL_CONTROL_DEVICES
# (default 10,000) devices registered in one staged rollout; then the metrics aggregation cost
# per update against the ingest time of one update (E2E_UPDATE_P50_S, set by federation.sh from
# its end-to-end round; alone, FL_INGEST_S or the issue's reference of one update's ingest).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$EP_ROOT"
ep_log "device control: ${FL_CONTROL_DEVICES:-10000} devices in a rollout (enrolment is not timed)"
"$EP_ROOT/target/release/control"
cost="$("$EP_ROOT/target/release/control" metrics-cost)"
python3 - "$cost" "${E2E_UPDATE_P50_S:-${FL_INGEST_S:-}}" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
us = c["metrics_us_per_update"]
print()
print(f"## federation: metrics aggregation ({c['updates']} accepted updates x {c['metrics']} metrics: spread + time series)")
print(f"  cost per update                  {us:.2f} us (native; done when a round's metrics are read, not at ingest)")
if sys.argv[2]:
    ingest = float(sys.argv[2])
    share = us / 1e6 / ingest
    print(f"  one update's ingest (p50)        {ingest * 1000:.1f} ms")
    print(f"goal {'metrics aggregation < 2% of an update ingest':<58} {'MET ' if share < 0.02 else 'MISS'} ({share:.4%})")
else:
    print("  (no ingest time in this run: run the whole federation section for the ratio)")
PY
