"""Fuzz the whole API from its own /openapi.json with schemathesis, over real HTTP.

Every check is on: no 5xx, status codes, content types, headers and bodies as documented, invalid
input rejected and valid input accepted, stateful sequences (create -> get/put/patch/delete).
"""

import subprocess
import sys
from pathlib import Path

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A list cursor is opaque and signed: only the Link of an earlier page holds a valid one, so a cursor
# that merely matches its documented pattern is rightly refused with 400 (tests/test_paging.py covers
# real cursors). For the list operation only, schema-valid data may therefore also answer 400.
CONFIG = """
[[operations]]
include-name = "GET /api/{user_id}/tasks"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
"""


def test_schemathesis_finds_nothing(live_server, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    result = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(tmp_path / "schemathesis.toml"),
         "run", live_server.url("/openapi.json"), "--checks", "all", "--max-examples", "60",
         "--seed", "20261126", "--no-color", "--request-timeout", "10",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
