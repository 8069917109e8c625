"""The SDK's top-level octomil.FederatedClient as it ships (no monkey-patching): register, round
assignment, round status, versions/latest, and a numpy update sent the way FederatedClient.train
sends it (np.save, base64, POST /api/v1/training/weights). The org API then shows the update
accepted and counted once. torch is not installed (PyPI's torch is gigabytes), so the torch
paths (join_round, pull_model's torch.load) are not exercised."""

import unittest

import numpy as np
from octomil.python.octomil.api_client import OctomilClientError
from octomil.python.octomil.federated_client import FederatedClient

import harness


class FederatedClientProtocol(unittest.TestCase):
    def test_register_assignment_status_latest_and_a_numpy_update(self):
        status, m = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/models",
                                {"name": harness.unique("sdk-fc")})
        self.assertEqual(status, 201, m)
        model_id = m["model"]["id"]
        harness.upload_version(model_id, harness.safetensors_f32(
            [("w", (2, 3), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])]))
        ident, auth = harness.enroll("sdk-fc")
        client = FederatedClient(auth_token_provider=auth.get_access_token_sync,
                                 org_id=harness.ORG_ID, api_base=harness.BASE_URL + "/api/v1",
                                 device_identifier=ident)
        device_id = client.register()
        self.assertTrue(device_id.startswith("dev_"), device_id)

        # The org is shared with the other tests, whose open rounds this device may also join; a
        # round aimed at a group of this device alone is offered to it before those.
        status, g = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/device-groups",
                                {"name": harness.unique("sdk-fc"), "device_ids": [device_id]})
        self.assertEqual(status, 201, g)
        # Two updates needed, so the round is still collecting when it is read back.
        status, r = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/rounds", {
            "model_id": model_id, "base_version": 1, "target": 2, "min": 2, "max": 2,
            "deadline_seconds": 600, "device_group": g["device_group"]["id"],
            "aggregation": {"algorithm": "fedavg"}})
        self.assertEqual(status, 201, r)
        round_id = r["round"]["id"]

        assignment = client.get_round_assignment()
        self.assertIsNotNone(assignment)
        self.assertEqual(assignment["round_id"], round_id)
        self.assertEqual(assignment["config"]["model_id"], model_id)
        self.assertEqual(assignment["config"]["version"], 1)
        self.assertNotIn("secure_aggregation", assignment["config"])
        self.assertNotIn("clip_norm", assignment["config"], "no clip_norm: the SDK must not clip")

        st = client.get_round_status(round_id)
        self.assertEqual((st["round_id"], st["status"]), (round_id, "open"))

        latest = client.api.get(f"/models/{model_id}/versions/latest")
        self.assertEqual(latest["version"], 1)
        self.assertEqual(client._get_model_info(model_id)["id"], model_id)

        # Exactly what FederatedClient.train does with a numpy array: np.save, base64, POST.
        delta = np.array([[0.25, -0.5, 1.0], [2.0, 0.0, -1.0]], dtype=np.float32)
        results = client.train(model_id, delta, sample_count=7, metrics={"loss": 0.5},
                               update_format="delta")
        self.assertEqual(len(results), 1)
        self.assertEqual(results[0]["status"], "accepted", results)
        self.assertEqual(results[0]["round_id"], round_id)

        # A second update from the same device is not counted again.
        with self.assertRaises(OctomilClientError):
            client.train(model_id, delta, sample_count=7, update_format="delta")

        status, metrics = harness.api(
            "GET", f"/v1/orgs/{harness.ORG_ID}/rounds/{round_id}/metrics")
        self.assertEqual(status, 200, metrics)
        self.assertEqual(metrics["funnel"]["accepted"], 1, metrics)
        self.assertEqual(metrics["metrics"]["loss"]["mean"], 0.5, metrics)

    def test_bad_arrays_get_json_errors_not_500(self):
        status, m = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/models",
                                {"name": harness.unique("sdk-fc-bad")})
        model_id = m["model"]["id"]
        harness.upload_version(model_id, harness.safetensors_f32([("w", (4,), [0.0] * 4)]))
        status, r = harness.api("POST", f"/v1/orgs/{harness.ORG_ID}/rounds", {
            "model_id": model_id, "base_version": 1, "target": 1, "min": 1, "max": 1,
            "deadline_seconds": 600, "aggregation": {"algorithm": "fedavg"}})
        self.assertEqual(status, 201, r)
        ident, auth = harness.enroll("sdk-fc-bad")
        client = FederatedClient(auth_token_provider=auth.get_access_token_sync,
                                 org_id=harness.ORG_ID, api_base=harness.BASE_URL + "/api/v1",
                                 device_identifier=ident)
        for bad in (np.zeros(5, dtype=np.float32),           # wrong shape
                    np.zeros(4, dtype=np.float64),           # wrong dtype
                    np.array([{"a": 1}] * 4, dtype=object)):  # pickle
            with self.assertRaises(OctomilClientError) as e:
                client.train(model_id, bad if bad.dtype != object else _pickled(bad),
                             sample_count=1, update_format="delta")
            self.assertIn('"error"', str(e.exception))
            self.assertIn("validation_failed", str(e.exception))


def _pickled(arr):
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


if __name__ == "__main__":
    unittest.main()
