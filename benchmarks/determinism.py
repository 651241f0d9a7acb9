"""Does load decide a tested number? The tests that train models, run idle and on saturated cores.

Every fit in the suite is bounded by work (fixed rounds, one family, one thread, seeds: see
tests/conftest.py's TINY_BUDGET), so what a test asserts must not depend on how busy the machine
is. This runs the same tests twice in one process each (`-p no:xdist`, so every prediction comes
in the same order): first as the machine is, then with `stress-ng --cpu N` keeping every core busy.
With LTV_PREDICTION_DIGESTS set, tests/conftest.py digests every `LTVModel.predict` output; the
values the tests record with `record_property` (junit XML) are compared too. Any difference is
printed and the exit status is 1.

    .venv/bin/python benchmarks/determinism.py                         # the training tests below
    .venv/bin/python benchmarks/determinism.py tests/test_run.py       # some of them
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "determinism"
# the test files whose fixtures train models (AutoGluon) or fit BTYD and assert on the results
TESTS = ["tests/test_run.py", "tests/test_models.py", "tests/test_monitoring.py", "tests/test_evaluation_honesty.py",
         "tests/test_explain.py", "tests/test_scoring.py", "tests/test_horizon.py", "tests/test_btyd.py"]


def run(name: str, tests: list[str]) -> dict:
    """One pytest run of `tests`: its prediction digests, recorded properties, outcome and load."""
    digests, junit = OUT / f"{name}.jsonl", OUT / f"{name}.xml"
    digests.unlink(missing_ok=True)
    env = os.environ | {"LTV_PREDICTION_DIGESTS": str(digests)}
    load_before, start = os.getloadavg()[0], time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *tests], cwd=ROOT, env=env)
    wall, load_after = time.monotonic() - start, os.getloadavg()[0]
    properties = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for prop in case.iter("property"):
            properties[f"{case.get('classname')}::{case.get('name')}::{prop.get('name')}"] = prop.get("value")
    lines = [json.loads(line) for line in digests.read_text().splitlines()] if digests.exists() else []
    return {"returncode": done.returncode, "wall_s": round(wall, 1), "load_before": load_before,
            "load_after": load_after, "predictions": lines, "properties": properties}


def compare(a: dict, b: dict) -> list[str]:
    """Every difference between two runs' predictions (in order) and recorded properties."""
    diffs = []
    if len(a["predictions"]) != len(b["predictions"]):
        diffs.append(f"{len(a['predictions'])} predictions vs {len(b['predictions'])}")
    for i, (x, y) in enumerate(zip(a["predictions"], b["predictions"])):
        if x != y:
            diffs.append(f"prediction {i} in {x['test']}: {x['digest']} ({x['rows']} rows) vs {y['digest']} "
                         f"({y['rows']} rows) in {y['test']}")
    for key in sorted(set(a["properties"]) | set(b["properties"])):
        if a["properties"].get(key) != b["properties"].get(key):
            diffs.append(f"{key}: {a['properties'].get(key)} vs {b['properties'].get(key)}")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tests", nargs="*", default=TESTS)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="stress-ng workers (default: every core)")
    args = parser.parse_args()
    if shutil.which("stress-ng") is None:
        sys.exit("stress-ng is not installed: apt-get install stress-ng (Debian), then rerun")
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"as is": run("as-is", args.tests)}
    stress = subprocess.Popen(["stress-ng", "--cpu", str(args.cpus), "--quiet"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(5)  # let the load average show the stressors
        results["saturated"] = run("saturated", args.tests)
    finally:
        stress.terminate()
        stress.wait()
    print(f"\n{'run':<10} {'pytest':>7} {'wall s':>8} {'load before':>12} {'load after':>11} {'predictions':>12} "
          f"{'properties':>11}")
    for name, r in results.items():
        print(f"{name:<10} {'passed' if r['returncode'] == 0 else 'FAILED':>7} {r['wall_s']:>8} {r['load_before']:>12.1f} "
              f"{r['load_after']:>11.1f} {len(r['predictions']):>12} {len(r['properties']):>11}")
    diffs = compare(results["as is"], results["saturated"])
    (OUT / "summary.json").write_text(json.dumps({k: {n: v for n, v in r.items() if n != "predictions"}
                                                  for k, r in results.items()} | {"differences": diffs}, indent=1))
    tests = len({p["test"] for p in results["as is"]["predictions"]})
    if diffs:
        print(f"\n{len(diffs)} difference(s) between the runs:\n  " + "\n  ".join(diffs[:50]))
    else:
        print(f"\nidentical: {len(results['as is']['predictions'])} predictions (made in {tests} tests) and "
              f"{len(results['as is']['properties'])} recorded values, bit for bit")
    failed = diffs or any(r["returncode"] for r in results.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
