"""What every device-SDK test needs: the running stack (BASE_URL, EP_STACK_FILE, as scripts/e2e
sets them), an org API key to mint bootstrap tokens with, and an in-memory keyring for the SDK's
`DeviceAuthClient` (these machines run no keyring service). The SDK's classes are used as they
are: nothing here patches them."""

import json
import os
import urllib.request
import uuid

import keyring
from keyring.backend import KeyringBackend


class MemoryKeyring(KeyringBackend):
    """Keeps the SDK's token state in this process."""

    priority = 1

    def __init__(self):
        super().__init__()
        self._store = {}

    def get_password(self, service, username):
        return self._store.get((service, username))

    def set_password(self, service, username, password):
        self._store[(service, username)] = password

    def delete_password(self, service, username):
        self._store.pop((service, username), None)


keyring.set_keyring(MemoryKeyring())

BASE_URL = os.environ["BASE_URL"]
STACK = json.load(open(os.environ["EP_STACK_FILE"]))
ORG_ID = STACK["org_id"]
API_KEY = STACK["api_key"]


def api(method, path, body=None, bearer=API_KEY):
    """A control-plane call with the org's API key; returns (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE_URL + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {bearer}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def bootstrap_token(device_identifier, scopes=None):
    """Mints a one-time bootstrap token as the customer's backend would."""
    body = {"device_identifier": device_identifier}
    if scopes is not None:
        body["scopes"] = scopes
    status, r = api("POST", f"/v1/orgs/{ORG_ID}/devices/bootstrap-tokens", body)
    assert status == 201, (status, r)
    return r["token"]
