#!/usr/bin/env python3
"""Build benchmarks: cold vs warm build, unchanged redeploy (platform time), release size on disk.

Run by hand: `python bench/builds.py [--runs N] [--quick]` (needs the package registries for the cold
installs). Apps: a small Python app (pip, requirements.txt with two packages) and a small Node app (npm ci,
one package). Goal: redeploy of an unchanged app in <= 1 s of platform time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 3
# min_ready 0: a deploy waits for its rollout, and the default 10 s of availability would be most of the figure.
PY_APP = {
    "stackblaze.yaml": "project: benchpy\nservices:\n  - name: worker\n    start: python worker.py\n"
                       "    min_ready: 0s\n",
    "requirements.txt": "six==1.16.0\nidna==3.7\n",
    "worker.py": "import six, idna, time\nprint('up', flush=True)\ntime.sleep(1e6)\n",
}
NODE_APP = {
    "stackblaze.yaml": "project: benchnode\nservices:\n  - name: worker\n    start: node worker.js\n"
                       "    min_ready: 0s\n",
    "package.json": json.dumps({"name": "benchnode", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}),
    "worker.js": "require('is-number');\nconsole.log('up');\nsetInterval(() => {}, 1e6);\n",
}


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "stackblaze.cli", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:  # the CLI's own words, not a CalledProcessError traceback
        raise SystemExit(f"stackblaze {' '.join(args)} exited {out.returncode}: {(out.stderr or out.stdout).strip()}")
    return dict(json.loads(out.stdout)) if "--json" in args else {}


def deploy_seconds(env: dict[str, str], app: Path) -> tuple[float, dict[str, Any]]:
    """Platform time of a deploy: what the daemon spent (load, detect, build, record, roll out)."""
    result = cli(env, "deploy", str(app), "--json")
    return float(result["seconds"]), result


def du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            full = Path(root, name)
            if not full.is_symlink():
                total += full.stat().st_size
    return total


def bench_app(name: str, files: dict[str, str], runs: int) -> dict[str, Any]:
    cold: list[float] = []
    warm: list[float] = []
    unchanged: list[float] = []
    sizes: dict[str, int] = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            home, app = Path(tmp, "home"), Path(tmp, "app")
            app.mkdir()
            for rel, text in files.items():
                (app / rel).write_text(text)
            if "package.json" in files:
                subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"], cwd=app,
                               check=True, capture_output=True)
            # workers as the daemon's user: the temp dir is 0700 (README: when the daemon runs as root)
            env = {**os.environ, "STACKBLAZE_HOME": str(home),
                   "STACKBLAZE_WORKER_USER": os.environ.get("STACKBLAZE_WORKER_USER", "root")}
            cli(env, "daemon", "start")
            try:
                seconds, first = deploy_seconds(env, app)
                assert first["services"][0]["installed"], first
                cold.append(seconds)
                (app / files_main(files)).write_text(files[files_main(files)] + "\n// edit\n".replace("//", "#")
                                                     if "worker.py" in files else files[files_main(files)] + "\n")
                seconds, edited = deploy_seconds(env, app)
                assert not edited["services"][0]["installed"], edited
                warm.append(seconds)
                seconds, again = deploy_seconds(env, app)
                assert not again["services"][0]["new_release"], again
                unchanged.append(seconds)
                release = cli(env, "releases", "worker", "--json")["releases"][-1]
                sizes = {"build tree": du(Path(release["path"])),
                         "dependency layer": du(Path(release["deps_dir"])) if release.get("deps_dir") else 0}
            finally:
                cli(env, "daemon", "stop", "--all")
    return {"app": name, "cold": statistics.median(cold), "warm (code edit)": statistics.median(warm),
            "unchanged redeploy": statistics.median(unchanged), **sizes}


def files_main(files: dict[str, str]) -> str:
    return "worker.py" if "worker.py" in files else "worker.js"


def cli_startup(runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stackblaze.cli", "--help"], check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=RUNS, help="runs of each app (medians reported)")
    parser.add_argument("--quick", action="store_true", help="one run")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    startup = cli_startup(runs)
    rows = [bench_app("python/pip", PY_APP, runs), bench_app("node/npm", NODE_APP, runs)]
    print(f"platform time per deploy, as the daemon measured it (medians of {runs}); the CLI adds {startup:.2f} s")
    print(f"{'app':<12} {'cold':>8} {'warm':>8} {'unchanged':>10} {'tree':>10} {'deps':>10}")
    for row in rows:
        print(f"{row['app']:<12} {row['cold']:>7.3f}s {row['warm (code edit)']:>7.3f}s "
              f"{row['unchanged redeploy']:>9.3f}s "
              f"{row['build tree'] / 1024:>8.1f}KB {row['dependency layer'] / 1024 / 1024:>8.2f}MB")
    print("cold: first deploy (installs); warm: after a code edit (cached dependencies); goal for unchanged <= 1 s")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "builds.json").write_text(json.dumps({"cli_startup": startup, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
