"""The SDK's DeviceAuthClient: bootstrap, refresh with rotation, revoke, against the stack."""

import asyncio
import unittest

import httpx
from octomil.auth import DeviceAuthClient

import harness


class DeviceAuth(unittest.TestCase):
    def test_bootstrap_refresh_and_revoke(self):
        ident = harness.unique("sdk-auth")
        client = DeviceAuthClient(
            base_url=harness.BASE_URL, org_id=harness.ORG_ID, device_identifier=ident
        )
        state = asyncio.run(
            client.bootstrap(bootstrap_bearer_token=harness.bootstrap_token(ident))
        )
        self.assertEqual(state.org_id, harness.ORG_ID)
        rotated = asyncio.run(client.refresh())
        self.assertNotEqual(rotated.refresh_token, state.refresh_token)
        offers = httpx.get(
            f"{harness.BASE_URL}/api/v1/federation/offers",
            headers={"authorization": f"Bearer {rotated.access_token}"},
        )
        self.assertEqual(offers.status_code, 200, offers.text)
        asyncio.run(client.revoke())
        after = httpx.get(
            f"{harness.BASE_URL}/api/v1/federation/offers",
            headers={"authorization": f"Bearer {rotated.access_token}"},
        )
        self.assertEqual(after.status_code, 401, after.text)
        # A refresh token rotated out earlier is refused too.
        reused = httpx.post(
            f"{harness.BASE_URL}/api/v1/device-auth/refresh",
            json={"refresh_token": state.refresh_token},
        )
        self.assertEqual(reused.status_code, 401, reused.text)


if __name__ == "__main__":
    unittest.main()
