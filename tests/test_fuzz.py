"""Fuzz the whole API from its own /openapi.json with schemathesis, over real HTTP.

Every check is on: no 5xx, status codes, content types, headers and bodies as documented, invalid
input rejected and valid input accepted, stateful sequences (create -> get/put/patch/delete).
With authentication on, the document declares the bearer requirement and every case carries a token
for its path's user (tests/schemathesis_auth.py).
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, WITH_AUTH

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A list cursor is opaque and signed: only the Link of an earlier page holds a valid one, so a cursor
# that merely matches its documented pattern is rightly refused with 400 (tests/test_paging.py covers
# real cursors). For the list operation only, schema-valid data may therefore also answer 400 (besides
# schemathesis's default 401, 403 and 404).
CONFIG = """
[[operations]]
include-name = "GET /api/{user_id}/tasks"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
"""


def test_schemathesis_finds_nothing(live_server, tmp_path):
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_auth", "PYTHONPATH": str(ROOT)} \
        if WITH_AUTH else None
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    result = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(tmp_path / "schemathesis.toml"),
         "run", live_server.url("/openapi.json"), "--checks", "all", "--max-examples", "60",
         "--seed", "20261126", "--no-color", "--request-timeout", "10",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
