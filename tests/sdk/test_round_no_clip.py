"""A round created without clip_norm, driven by the SDK's DeviceFederatedClient exactly as it
ships: the plan says "no clipping" in a form prepare_update handles (it raised TypeError on
null, and clips at 1.0 when the key is absent), names the element layout, and the published
average is base + the unclipped update."""

import hashlib
import json
import struct
import sys
import time
import unittest

import httpx
from octomil.device_agent.db.local_db import LocalDB
from octomil.device_agent.training.db_schema import TRAINING_SCHEMA_STATEMENTS
from octomil.device_agent.training.federated_client import DeviceFederatedClient

import harness


def read_safetensors_f32(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = list(struct.unpack(f"<{(hi - lo) // 4}f", data[lo:hi]))
    return out


class RoundWithoutClipNorm(unittest.TestCase):
    def test_unclipped_round_through_device_federated_client(self):
        status, m = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/models",
                                {"name": harness.unique("sdk-noclip")})
        self.assertEqual(status, 201, m)
        model_id = m["model"]["id"]
        base = {"w": [0.25, -0.5, 1.0, 2.0], "b": [0.125, -1.0]}
        harness.upload_version(model_id, harness.safetensors_f32(
            [("w", (2, 2), base["w"]), ("b", (2,), base["b"])]))
        status, r = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/rounds", {
            "model_id": model_id, "base_version": 1, "target": 1, "min": 1, "max": 1,
            "deadline_seconds": 600, "aggregation": {"algorithm": "fedavg"}})
        self.assertEqual(status, 201, r)
        round_id = r["round"]["id"]

        ident, auth = harness.enroll("sdk-noclip")
        http = httpx.Client(headers={"authorization": f"Bearer {auth.get_access_token_sync()}"},
                            timeout=60)
        db = LocalDB(":memory:")
        for stmt in TRAINING_SCHEMA_STATEMENTS:
            db.execute(stmt)
        client = DeviceFederatedClient(db, api_base=harness.BASE_URL + "/api/v1", http_client=http)

        offers = [o for o in client.check_offers(ident) if o["round_id"] == round_id]
        self.assertEqual(len(offers), 1, offers)
        pid = client.join_round(round_id, ident)
        client.transition(pid, "PLAN_FETCHING")
        plan = client.fetch_plan(offers[0]["plan_id"])
        client.transition(pid, "PLAN_READY")
        self.assertEqual(plan.clip_norm, sys.float_info.max)
        self.assertEqual(plan.noise_sigma, 0.0)
        raw_plan = http.get(f"{harness.BASE_URL}/api/v1/federation/plans/{plan.plan_id}").json()
        self.assertEqual(raw_plan["clipping"], "none")
        layout = raw_plan["element_layout"]
        self.assertEqual([(t["name"], t["offset"], t["count"], t["shape"]) for t in layout],
                         [("w", 0, 4, [2, 2]), ("b", 4, 2, [2])]
                         if layout[0]["name"] == "w" else
                         [("b", 0, 2, [2]), ("w", 2, 4, [2, 2])])

        # An update whose norm (about 13.6) is far above the SDK's default bound of 1.0, laid
        # out as the plan says.
        delta = {"w": [3.0, -4.0, 12.0, 0.5], "b": [2.0, -1.0]}
        flat = []
        for t in layout:
            flat.extend(delta[t["name"]])
        update = client.run_local_training(pid, plan, lambda ctx: {"update": flat})
        envelope = client.prepare_update(pid, update, clip_norm=plan.clip_norm,
                                         noise_sigma=plan.noise_sigma,
                                         secure_agg_config=plan.secure_agg_config)
        self.assertEqual(json.loads(envelope)["data"], flat, "nothing clipped or noised")
        client.transition(pid, "UPLOADING")
        meta = {"sample_count": 10, "format": "plaintext_json",
                "sha256": hashlib.sha256(envelope).hexdigest(), "size": len(envelope)}
        upload_id, urls = client.initiate_upload(round_id, pid, meta)
        self.assertTrue(client.upload_parts(upload_id, envelope, urls))
        self.assertTrue(client.complete_upload(round_id, upload_id, meta))
        client.transition(pid, "UPLOADED")

        deadline = time.time() + 120
        while True:
            status, r = harness.api("GET", f"/v1/orgs/{harness.ORG_ID}/rounds/{round_id}")
            if r["round"]["state"] in ("published", "failed", "insufficient_updates"):
                break
            self.assertLess(time.time(), deadline, r)
            time.sleep(0.5)
        self.assertEqual(r["round"]["state"], "published", r)
        version = r["round"]["published_version_id"]
        req_headers = {"authorization": f"Bearer {harness.API_KEY}"}
        blob = httpx.get(f"{harness.BASE_URL}/v1/orgs/{harness.ORG_ID}/models/{model_id}"
                         f"/versions/{version}/download", headers=req_headers).content
        got = read_safetensors_f32(blob)
        for name in ("w", "b"):
            want = [struct.unpack("<f", struct.pack("<f", b + d))[0]
                    for b, d in zip(base[name], delta[name])]
            self.assertEqual(got[name], want, name)


if __name__ == "__main__":
    unittest.main()
