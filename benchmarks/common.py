"""What every benchmark script shares: child processes, the machine's description, JSON.

Each measured configuration runs in its own child process, so that its peak memory
(max RSS) is its own and its compile cache starts cold.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time


def run_child(script: str, args: list[str], env: dict | None = None) -> dict:
    """Run ``python script args`` and parse the JSON object on its last stdout line;
    on failure a row ``{"error": ...}`` with the last stderr line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {out.returncode} (out of memory?)"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """Device kind, CPU count, platform, JAX version, date and the thread settings."""
    import jax

    return dict(
        device=str(jax.devices()[0].device_kind),
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        jax=jax.__version__,
        date=time.strftime("%Y-%m-%d"),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )


def load_rows(path: str, append: bool) -> list[dict]:
    """The rows already in ``path`` when appending, else none."""
    if append and os.path.exists(path):
        with open(path) as f:
            return json.load(f)["results"]
    return []


def write_results(path: str, rows: list[dict]) -> None:
    """``{machine..., "results": rows}`` as indented JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(**machine(), results=rows), f, indent=2)
    print(f"wrote {path}")
