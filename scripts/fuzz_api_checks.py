"""Schemathesis hooks for scripts/fuzz-api: the one check keygate adds to the stock ones.

A schema-valid request must be accepted. Where the server refuses one with 400 or 422 for a reason
no JSON Schema can state (a permission the catalogue lacks, an expiry already past, a cursor it
never issued), the operation names that error code in its `x-semantic-refusals` extension, and the
refusal passes; any other 400 or 422 to a schema-valid request is a gap in the document. This
replaces the stock `positive_data_acceptance`, which cannot know those reasons.
"""

import schemathesis
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case


@schemathesis.check
def schema_valid_requests_are_accepted(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or is_unexpected_http_status_case(case):
        return None
    if response.status_code not in (400, 422):
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - a body that is not our error shape is a failure below
        code = None
    allowed = case.operation.definition.raw.get("x-semantic-refusals", [])
    if code in allowed:
        return None
    raise AssertionError(
        f"a schema-valid request was refused with {response.status_code} `{code}`, which the "
        f"operation does not list in x-semantic-refusals ({', '.join(allowed) or 'none'}): "
        f"{response.text[:300]}"
    )
