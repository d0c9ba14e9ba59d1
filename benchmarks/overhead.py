"""The pipeline's own overhead (`--overhead`): the share of a finished `dvc repro` spent outside the stages' own work,
and each stage script's start-up and import time."""

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import ROOT


def overhead(metrics_path=ROOT / "reports" / "metrics.json"):
    """The share of a finished `dvc repro` spent outside the stages' own work (process start-up, imports, DVC's
    bookkeeping), from the `cost` that experiments/report.py writes into metrics.json."""
    path = Path(metrics_path)
    if not path.exists():
        raise SystemExit(f"--overhead: {path} does not exist; run the pipeline (dvc repro) to write it, or pass --metrics")
    cost = json.loads(path.read_text()).get("cost")
    if not cost:
        raise SystemExit(f"--overhead: {path} has no 'cost'; rerun the report stage (dvc repro report)")
    outside = max(0.0, cost["elapsed_minutes"] - cost["work_minutes"])
    return {"elapsed_minutes": cost["elapsed_minutes"], "work_minutes": cost["work_minutes"], "outside_minutes": outside,
            "outside_fraction": outside / cost["elapsed_minutes"]}


def stage_scripts():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
    return sorted({word for stage in stages for word in stage.get("do", stage)["cmd"].split() if word.endswith(".py")})


def import_seconds(script, repeats=3):
    """Fastest of `repeats` runs of a fresh python that only runs `script`'s top-level imports: the start-up
    cost every process of that stage pays before its work."""
    tree = ast.parse((ROOT / script).read_text())
    code = "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("", "experiments", "benchmarks"))}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT / Path(script).parent, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def report(metrics_path):
    o = overhead(metrics_path)
    print(f"pipeline overhead: {o['outside_minutes']:.1f} of {o['elapsed_minutes']:.1f} elapsed minutes "
          f"({o['outside_fraction'] * 100:.1f}%) outside the stages' own work ({o['work_minutes']:.1f} min; target < 10%)")
    print("start-up + top-level imports of one process, fastest of 3:")
    for script in stage_scripts():
        print(f"  {script}: {import_seconds(script):.2f} s")
