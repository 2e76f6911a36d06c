"""`--profile`: a py-spy flame graph of one gunicorn worker during each measured run (docs/profiles/).

py-spy samples the worker from outside, only its threads that are running (not those waiting for
PostgreSQL, a socket or the GIL): the graph is where the worker's CPU goes. `--nonblocking` reads
the worker's memory without pausing it, so the run's numbers are hardly disturbed; still, compare
those of unprofiled runs.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = ROOT / "docs" / "profiles"
RATE = 250  # samples per second


def py_spy():
    """The py-spy executable beside this Python, or on PATH; RuntimeError naming the install when missing."""
    found = Path(sys.executable).parent / "py-spy"
    found = str(found) if found.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install -r requirements-bench.txt")
    return found


def start(master_pid, name, duration, label="", raw_dir=None):
    """Record the gunicorn `master_pid`'s first worker for `duration` seconds as a flame graph in
    docs/profiles/ and, with `raw_dir`, its second as collapsed stacks there (for tallying by function)."""
    workers = sorted(psutil.Process(master_pid).children(), key=lambda p: p.pid)
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{name}{f'-{label}' if label else ''}"
    outputs = [(workers[0], "flamegraph", PROFILE_DIR / f"{stem}.svg")]
    if raw_dir is not None and len(workers) > 1:
        outputs.append((workers[1], "raw", Path(raw_dir) / f"{stem}.collapsed.txt"))
    recorders = []
    for worker, kind, out in outputs:
        recorder = subprocess.Popen([py_spy(), "record", "--pid", str(worker.pid), "--duration", str(duration),
                                     "--rate", str(RATE), "--nonblocking", "--format", kind, "--output", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        recorder.output = out
        recorders.append(recorder)
    return recorders


def finish(recorders):
    """Wait for `recorders` to write their files; RuntimeError with py-spy's words when one could not."""
    for recorder in recorders:
        _, errors = recorder.communicate(timeout=60)
        if recorder.returncode != 0:
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace').strip()}")
        _relative_paths(recorder.output)


def _relative_paths(path):
    """The graph names files relative to the checkout (py-spy writes its command line, absolute paths)."""
    if path.suffix == ".svg":
        path.write_text(path.read_text().replace(f"{ROOT}/", ""))
