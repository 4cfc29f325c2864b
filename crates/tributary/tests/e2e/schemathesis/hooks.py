"""Schemathesis hooks for Tributary's contract test (tests/e2e/contract.rs).

They remove from generated requests only what a schema cannot make valid,
because validity depends on the server's state, never a rule the server
enforces on its own: list cursors (opaque, issued by the server), references
to profiles by id, and expiry times (which must lie in the future).
"""

import re
import time

import schemathesis

# Imported now, at the top of the stack: schemathesis imports it lazily deep
# inside data generation, where anyio's lazy importer (it compiles its own
# source) failed on Python 3.11 with "AST constructor recursion depth
# mismatch", a runtime error that had nothing to do with the server.
import schemathesis.transport.asgi  # noqa: F401,E402


@schemathesis.hook
def map_query(ctx, query):
    if query:
        query.pop("cursor", None)
    return query


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict):
        body.pop("profile_id", None)
        # Only a well-typed value is moved into the future: a negative case
        # that made it another type must stay invalid.
        at = body.get("expires_at")
        if isinstance(at, (int, float)) and not isinstance(at, bool) and -2**63 <= at < 2**63:
            body["expires_at"] = int(time.time() * 1000) + 3_600_000
    return body


@schemathesis.hook
def map_headers(ctx, headers):
    # A well-formed If-Match must name the version the resource has now; a
    # malformed one (a negative case) stays.
    if headers and re.fullmatch(r'\*|(W/)?"v[0-9]{1,18}"', headers.get("If-Match", "")):
        headers.pop("If-Match")
    return headers
