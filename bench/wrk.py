"""Running one wrk load (a separate process on 127.0.0.1) and reading its JSON result line."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULT_PREFIX = "BENCH_RESULT "
INSTALL_HINT = "wrk is not installed; install it with: sudo apt-get install wrk"


class WrkError(RuntimeError):
    """wrk could not run, or printed no result line."""


def require_wrk():
    """The wrk executable, or WrkError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkError(INSTALL_HINT)
    return path


def run(script, url, *, duration, connections, threads, timeout, env, log):
    """Run bench/`script` against `url` for `duration` seconds; return done()'s result as a dict.

    `env` carries the BENCH_* parameters the Lua scripts read; wrk's own text goes to `log`.
    """
    command = [
        require_wrk(), f"--threads={threads}", f"--connections={connections}", f"--duration={duration}s",
        f"--timeout={timeout}s", "--latency", f"--script={BENCH_DIR / script}", url,
    ]
    # LUA_PATH lets every script `require("common")` from bench/ whatever the working directory.
    full_env = {**os.environ, **env, "BENCH_WRK_THREADS": str(threads), "LUA_PATH": f"{BENCH_DIR}/?.lua;;"}
    proc = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=duration + 60)
    except BaseException:  # Ctrl-C or a hung wrk: never leave it running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    log.write(f"$ {' '.join(command)}\n{output}\n")
    log.flush()
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise WrkError(f"wrk {script} exited with {proc.returncode} and no result line:\n{output.strip()}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])
