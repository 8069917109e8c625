"""The SDK's OctomilControl (register, heartbeat, sync, desired state, observed state) across a
staged rollout: devices in the first stage get the new version and can fetch its artifact, the
others keep the old one; a promotion gives it to everyone; a rollback takes it back."""

import hashlib
import unittest

import httpx
from octomil.control import OctomilControl
from octomil.python.octomil.api_client import _ApiClient

import harness


def bucket(deployment_id, device_id):
    """The rollout bucket from its specification (not from the server's code)."""
    digest = hashlib.sha256(
        b"edgeplane/rollout/v1\0" + deployment_id.encode() + b"\0" + device_id.encode()
    ).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


class Rollout(unittest.TestCase):
    def test_staged_rollout_promote_and_rollback(self):
        status, m = harness.api(
            "POST", f"/v1/orgs/{harness.ORG_ID}/models", {"name": harness.unique("sdk-rollout")}
        )
        self.assertEqual(status, 201, m)
        model_id = m["model"]["id"]
        v1 = harness.upload_version(model_id, harness.safetensors_f32([("w", (4,), [0.5] * 4)]))
        harness.approve(model_id, 1)

        devices = []
        for _ in range(12):
            ident, auth = harness.enroll("sdk-ctl")
            api = _ApiClient(auth_token_provider=auth.get_access_token_sync,
                             api_base=harness.BASE_URL + "/api/v1")
            control = OctomilControl(api=api, org_id=harness.ORG_ID)
            reg = control.register(device_id=ident)
            self.assertTrue(reg.id.startswith("dev_"), reg)
            self.assertEqual(reg.device_identifier, ident)
            self.assertEqual(control.heartbeat().status, "ok")
            devices.append((reg.id, auth, control))
        ident, auth = harness.enroll("sdk-outsider")
        outsider = OctomilControl(
            api=_ApiClient(auth_token_provider=auth.get_access_token_sync,
                           api_base=harness.BASE_URL + "/api/v1"),
            org_id=harness.ORG_ID,
        )
        outsider.register(device_id=ident)

        status, g = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/device-groups",
                                {"name": harness.unique("sdk-fleet"),
                                 "device_ids": [d[0] for d in devices]})
        self.assertEqual(status, 201, g)
        group = g["device_group"]["id"]

        def deploy(version, stages):
            status, r = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/deployments",
                                    {"model_id": model_id, "version": version,
                                     "device_group_ids": [group], "stages": stages})
            self.assertEqual(status, 201, r)
            return r["deployment"]["id"]

        def act(dep, what):
            status, r = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/deployments/{dep}/{what}", {})
            self.assertEqual(status, 200, r)
            return r["deployment"]

        first = deploy(1, [100])
        act(first, "promote")
        for _, _, control in devices:
            self.assertEqual([(e["model_id"], e["version"]) for e in control.get_desired_state()],
                             [(model_id, "1")])
        self.assertEqual(outsider.get_desired_state(), [])

        v2 = harness.upload_version(model_id, harness.safetensors_f32([("w", (4,), [1.5] * 4)]))
        harness.approve(model_id, 2)
        dep = deploy(2, [50, 100])
        in_first = {d[0]: bucket(dep, d[0]) < 5_000 for d in devices}
        self.assertTrue(any(in_first.values()) and not all(in_first.values()), in_first)

        for device_id, auth, control in devices:
            # The unified sync, as the SDK sends it, with the device's inventory.
            raw = control.sync(installed_models=[{"model_id": model_id, "version": "1",
                                                  "status": "ACTIVE"}],
                               active_versions=[{"model_id": model_id, "version": "1"}])
            self.assertTrue(raw["nextPollIntervalSeconds"] >= 1)
            entries = control.get_desired_state()
            self.assertEqual(control._last_next_poll_seconds, raw["nextPollIntervalSeconds"])
            want = "2" if in_first[device_id] else "1"
            self.assertEqual([(e["model_id"], e["version"]) for e in entries], [(model_id, want)])
            manifest = entries[0]["manifest"]
            token = auth.get_access_token_sync()
            got = httpx.get(manifest["downloadUrl"], headers={"authorization": f"Bearer {token}"})
            self.assertEqual(got.status_code, 200, got.text)
            self.assertEqual(hashlib.sha256(got.content).hexdigest(), manifest["sha256"])
            self.assertEqual(manifest["files"][0]["sha256"], manifest["sha256"])
            self.assertEqual(entries[0]["deployment_id"], dep if want == "2" else first)
            if not in_first[device_id]:
                # Version 2's URL is not this device's to use.
                url = f"{harness.BASE_URL}/api/v1/models/{model_id}/versions/{v2['id']}/download"
                refused = httpx.get(url, headers={"authorization": f"Bearer {token}"})
                self.assertEqual(refused.status_code, 404, refused.text)
            else:
                ack = control.report_observed_state(models=[{
                    "modelId": model_id, "installedVersion": "2", "activeVersion": "2",
                    "status": "ACTIVE"}])
                self.assertEqual(ack["models"], 1)
        self.assertEqual(outsider.get_desired_state(), [])

        status, shown = harness.api("GET", f"/v1/orgs/{harness.ORG_ID}/deployments/{dep}")
        self.assertEqual(status, 200, shown)
        first_stage = shown["deployment"]["progress"][0]
        self.assertEqual(first_stage["devices"], sum(in_first.values()))
        self.assertEqual(first_stage["active"], sum(in_first.values()))

        self.assertEqual(act(dep, "promote")["state"], "completed")
        for _, _, control in devices:
            self.assertEqual([e["version"] for e in control.get_desired_state()], ["2"])
            self.assertTrue(control.refresh().assignments_changed)

        self.assertEqual(act(dep, "rollback")["state"], "rolled_back")
        for _, _, control in devices:
            entries = control.get_desired_state()
            self.assertEqual([e["version"] for e in entries], ["1"])
            self.assertEqual(entries[0]["artifact_id"], v1["id"])


if __name__ == "__main__":
    unittest.main()
