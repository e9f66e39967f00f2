"""Mutation testing: how many deliberate small bugs in the modules that decide results and safety the tests catch.

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python benchmarks/mutation.py [--max-children 2] [--report-only]

Runs mutmut over the modules and with the tests that pyproject.toml's [tool.mutmut] names (one mutant at a time: a
changed comparison, number, operator, argument or return value), then writes benchmarks/results/mutation.json: per
module the mutants killed (a test failed), timed out (counted as caught: the mutant hangs), survived (every test
passed) and the score, (killed + timed out) / all; and each survivor with the reason it is left, read from
benchmarks/mutation_survivors.toml (`mutmut show NAME` prints its diff). Exits 1 when a module is under its
target or a survivor has no reason. Not part of `make test`: it takes tens of minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# The share of mutants the tests must catch: 90% where the published figures are decided, 80% elsewhere.
TARGETS = {"src/bert4rec/evaluation/metrics.py": 0.9, "src/bert4rec/evaluation/protocols.py": 0.9,
           "src/bert4rec/evaluation/splits.py": 0.9, "src/bert4rec/data/leave_one_out.py": 0.9}
DEFAULT_TARGET = 0.8
KILLED, TIMEOUT, SURVIVED = {1, 3}, {-24, 24, 152, 255, 36}, {0}


def modules() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]


def run_mutmut(max_children: int) -> float:
    # The tests run from mutants/, so the data folder is given absolutely. Each mutant's tests run in a process
    # forked from a warm one: a thread pool started before the fork would deadlock the child, so one thread.
    env = os.environ | {"BERT4REC_SHARED_DATA": str(SHARED_DATA.resolve()), "OMP_NUM_THREADS": "1",
                        "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) / 60


def module_result(path: str) -> tuple[dict, list[str]]:
    """Counts and score of one module, and the names of its surviving mutants."""
    exit_codes = json.loads((REPO / "mutants" / f"{path}.meta").read_text())["exit_code_by_key"]
    counts = {"killed": 0, "timeout": 0, "survived": 0, "other": 0}
    survivors = []
    for name, code in exit_codes.items():
        kind = ("killed" if code in KILLED else "timeout" if code in TIMEOUT
                else "survived" if code in SURVIVED else "other")
        counts[kind] += 1
        if kind != "killed" and kind != "timeout":
            survivors.append(name)
    total = sum(counts.values())
    counts |= {"total": total, "score": (counts["killed"] + counts["timeout"]) / max(1, total),
               "target": TARGETS.get(path, DEFAULT_TARGET)}
    return counts, survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report-only", action="store_true", help="summarise the last run in mutants/")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mutation.json")
    args = parser.parse_args()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    minutes = previous.get("minutes") if args.report_only else run_mutmut(args.max_children)
    reasons = tomllib.loads((HERE / "mutation_survivors.toml").read_text())
    commit = previous.get("commit") if args.report_only else subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report = {"modules": {}, "survivors": [], "minutes": minutes, "commit": commit,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    failures = []
    for path in modules():
        counts, survivors = module_result(path)
        report["modules"][path] = counts
        if counts["score"] < counts["target"]:
            failures.append(f"{path}: {counts['score']:.0%} of mutants caught, under the {counts['target']:.0%} target")
        for name in survivors:
            report["survivors"].append({"module": path, "mutant": name, "reason": reasons.get(name)})
            if name not in reasons:
                failures.append(f"{name} survived with no reason in benchmarks/mutation_survivors.toml")
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    for path, counts in report["modules"].items():
        print(f"{path:45s} {counts['score']:6.1%}  ({counts['killed']} killed, {counts['timeout']} timed out, "
              f"{counts['survived']} survived, {counts['other']} other, of {counts['total']})")
    print(*failures, sep="\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
