#!/usr/bin/env python3
"""First-run seeding of a local stack: calls POST /v1/setup and writes the credentials file.

Usage: seed.py BASE_URL SETUP_TOKEN OUT_JSON [--email E] [--org-name N]
The file has the stable developer-interface fields: base_url, org_id, org_slug, owner_email,
api_key.
"""
import argparse, json, os, sys, urllib.error, urllib.request

p = argparse.ArgumentParser()
p.add_argument("base_url")
p.add_argument("setup_token")
p.add_argument("out")
p.add_argument("--email", default="owner@example.com")
p.add_argument("--org-name", default="Demo Org")
a = p.parse_args()

req = urllib.request.Request(
    a.base_url.rstrip("/") + "/v1/setup",
    data=json.dumps({"org_name": a.org_name, "owner_email": a.email}).encode(),
    headers={"authorization": f"Bearer {a.setup_token}", "content-type": "application/json"},
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        res = json.load(r)
except urllib.error.HTTPError as e:
    sys.exit(f"setup failed: HTTP {e.code}: {e.read().decode(errors='replace')}")

out = {
    "base_url": a.base_url.rstrip("/"),
    "org_id": res["org"]["id"],
    "org_slug": res["org"]["slug"],
    "owner_email": res["owner"]["email"],
    "api_key": res["api_key"]["key"],
}
fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
