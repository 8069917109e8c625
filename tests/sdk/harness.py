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


def safetensors_f32(tensors):
    """A safetensors file of float32 tensors: [(name, shape, flat values)], in that order."""
    import struct

    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def upload_version(model_id, file_bytes):
    """Uploads a version of `model_id` with the org's API key; returns the version object."""
    req = urllib.request.Request(
        f"{BASE_URL}/v1/orgs/{ORG_ID}/models/{model_id}/versions", data=file_bytes, method="POST"
    )
    req.add_header("authorization", f"Bearer {API_KEY}")
    req.add_header("content-type", "application/octet-stream")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 201, r.status
        return json.loads(r.read())["version"]


def approve(model_id, version):
    status, r = api("POST", f"/v1/orgs/{ORG_ID}/models/{model_id}/versions/{version}/approve", {})
    assert status == 200, (status, r)


def enroll(prefix, scopes=None):
    """A device bootstrapped through the SDK's DeviceAuthClient; returns (identifier, client)."""
    import asyncio

    from octomil.auth import DeviceAuthClient

    ident = unique(prefix)
    client = DeviceAuthClient(base_url=BASE_URL, org_id=ORG_ID, device_identifier=ident)
    asyncio.run(client.bootstrap(bootstrap_bearer_token=bootstrap_token(ident, scopes)))
    return ident, client
