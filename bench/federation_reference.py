#!/usr/bin/env python3
"""Reference FedAvg implementations for `scripts/bench federation`, on the same inputs as ours.

  federation_reference.py flower DIR N   Flower's own `aggregate_inplace` over N FitRes results
  federation_reference.py numpy DIR N    a numpy streaming fold (f64 accumulator, one update at a time)

Flower's strategy API hands the aggregator the whole list of results, so all N updates are held
(deserialized per round from Flower's own ndarray wire format) — that is what its peak memory
measures. Prints one JSON line; never asserts anything.
"""
import json, resource, sys, time
from pathlib import Path

import numpy as np

mode, directory, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])


def read_safetensors(path):
    raw = path.read_bytes()
    hl = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + hl])
    data = raw[8 + hl :]
    tensors = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        tensors.append((b, name, np.frombuffer(data[b:e], dtype=np.float32).reshape(t["shape"])))
    return [a for _, _, a in sorted(tensors, key=lambda x: x[0])], len(raw)


def weight(i):
    return 1 + (i * 37) % 500


pool = [read_safetensors(directory / f"u{k}.safetensors") for k in range(4)]
update_bytes = pool[0][1]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if mode == "flower":
    import flwr
    from flwr.common import Code, FitRes, Parameters, Status, ndarrays_to_parameters
    from flwr.server.strategy.aggregate import aggregate_inplace

    # N distinct results, as N clients would send them (Flower's own serialization).
    results = []
    for i in range(n):
        params = ndarrays_to_parameters(pool[i % 4][0])
        results.append((None, FitRes(status=Status(code=Code.OK, message=""), parameters=params, num_examples=weight(i), metrics={})))
    start = time.perf_counter()
    out = aggregate_inplace(results)
    seconds = time.perf_counter() - start
    checksum = float(sum(np.sum(a, dtype=np.float64) for a in out))
    label = f"Flower {flwr.__version__} aggregate_inplace"
elif mode == "numpy":
    total = sum(a.size for a in pool[0][0])
    acc = np.zeros(total, dtype=np.float64)
    start = time.perf_counter()
    tw = 0.0
    for i in range(n):
        w = float(weight(i))
        at = 0
        for a in pool[i % 4][0]:
            flat = a.reshape(-1)
            acc[at : at + flat.size] += w * flat
            at += flat.size
        tw += w
    avg = acc / tw
    seconds = time.perf_counter() - start
    checksum = float(avg.sum())
    label = f"numpy {np.__version__} streaming fold (f64)"
else:
    sys.exit(f"unknown mode {mode}")

print(json.dumps({"impl": label, "n": n, "seconds": seconds, "mb_per_s": n * update_bytes / 1e6 / seconds,
                  "peak_rss_mb": peak_rss_mb(), "checksum": checksum}))
