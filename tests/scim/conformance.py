"""Runs the scim2-tester conformance checks (RFC 7643/7644) against the stack's /scim/v2 with a
SCIM key, as an IdP would call it, and prints one line per check.

Usage: conformance.py CREDENTIALS_JSON   (from `e2e`'s `scim_key` binary: base_url, key)

Exits non-zero when a check fails that EXPECTED does not explain. EXPECTED lists the known
failures, each with the reason it fails here (README, "SCIM", keeps the same list); a check
listed there that passes is reported so the list is kept true.
"""

import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

# (resource type or "", check title) -> why it fails against edgeplane.
EXPECTED = {
    ("User", "object_replacement"): "the check's PUT replaces `emails` with a new random address; "
    "a SCIM user's email is its account's, which may belong to other orgs, so edgeplane refuses "
    "to change it (400 mutability; `emails` is published as immutable)",
}

# MUST-level violations and security problems fail; SHOULD-level deviations are printed only.
FAILED = {Status.ERROR, Status.CRITICAL}


def main():
    creds = json.load(open(sys.argv[1]))
    http = httpx2.Client(
        base_url=creds["base_url"] + "/scim/v2",
        headers={"Authorization": f"Bearer {creds['key']}"},
        timeout=60,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed, unexplained, passed, skipped = 0, [], 0, 0
    seen = set()
    for r in results:
        key = (r.resource_type or "", r.title)
        seen.add(key)
        bad = r.status in FAILED
        mark = "FAIL" if bad else "ok"
        print(f"{mark:4} {r.status.name:10} {key[0] or '-':6} {r.title}: {r.reason or ''}")
        if bad:
            failed += 1
            if key not in EXPECTED:
                unexplained.append(key)
        elif r.status == Status.SKIPPED:
            skipped += 1
        else:
            passed += 1
    for key, why in EXPECTED.items():
        if key not in seen or not any(
            (r.resource_type or "", r.title) == key and r.status in FAILED for r in results
        ):
            print(f"note: expected failure {key} did not fail ({why})")
    print(
        f"scim2-tester: {passed} passed, {failed} failed, {skipped} skipped "
        f"({failed - len(unexplained)} failed as expected, {len(unexplained)} unexplained)"
    )
    if unexplained:
        for k in unexplained:
            print(f"unexplained failure: {k}")
        sys.exit(1)


if __name__ == "__main__":
    main()
