"""Schemathesis hooks for the fuzz run with authentication on: each case carries a token for its path's user
(and /metrics the suite's METRICS_TOKEN)."""

import schemathesis

from tests.support import SUITE_METRICS_TOKEN, token_for


def _user(case):
    return (case.path_parameters or {}).get("user_id")


@schemathesis.auth(refresh_interval=None, retry_on=[])
class PathUserToken:
    """A valid token naming the user in the case's path (none for paths without one)."""

    def get(self, case, context):
        if case.path == "/metrics":
            return SUITE_METRICS_TOKEN
        user = _user(case)
        return token_for(user) if isinstance(user, str) and user else None

    def set(self, case, data, context):
        if data is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
