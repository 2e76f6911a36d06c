"""Fuzz the whole API from its own /openapi.json with schemathesis, over real HTTP.

Every check is on: no 5xx, status codes, content types, headers and bodies as documented, invalid
input rejected and valid input accepted, stateful sequences (create -> get/put/patch/delete).
With authentication on, the document declares the bearer requirement and every case carries a token
for its path's user (tests/schemathesis_auth.py). tests/schemathesis.toml says which answers count as
accepting valid input, and why.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, WITH_AUTH

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def test_schemathesis_finds_nothing(live_server, tmp_path):
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_auth", "PYTHONPATH": str(ROOT)} \
        if WITH_AUTH else None
    result = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", live_server.url("/openapi.json"),
         "--checks", "all", "--max-examples", "60",
         "--seed", "20261126", "--no-color", "--request-timeout", "10",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-4000:]
