"""Mutation testing of ``core/``, ``storage/`` and ``runtime/`` with mutmut.

Not part of ``make test``: a full run takes hours on a 2-core machine.
mutmut (and its dependencies: libcst, textual, coverage) is not in the
``test`` extras; install it into the project's venv first::

    .venv/bin/pip install 'mutmut>=3.8,<4'
    .venv/bin/python tools/mutation.py core              # one package
    .venv/bin/python tools/mutation.py storage --only backchannel/storage/framing.py
    .venv/bin/python tools/mutation.py runtime --budget 1800

Each run works in a scratch copy (``--workdir``, default
``/tmp/bc-mutation-<package>``): the package's sources, ``tests/`` and a
``pyproject.toml`` with a ``[tool.mutmut]`` section are copied there, so
the work tree gets no ``mutants/`` directory and two packages can run side
by side. Mutants are tried against the fast, in-process tests of the
layers that use the package (``TEST_DIRS``); the real-server HTTP tests
are left out, so the kill rate is a lower bound. A rerun in the same
workdir resumes where the last one stopped (mutmut keeps its results in
``mutants/``); the tests are copied afresh each time, and
``--rerun-survivors`` tries the survivors again by name (after adding
tests, or to confirm them: under load a mutant has been seen to survive a
full run yet be killed when run alone). ``--budget`` stops a run after that many seconds; the
report then counts only the mutants that were tried.

The closing lines print the kill rate per module and package: killed /
(killed + survived + "no tests"), where a timeout counts as killed and a
mutant of code that no selected test runs counts as a survivor; mutants
not run (budget spent, or not checkable) are reported apart. ``--survivors`` lists the survivors;
``.venv/bin/mutmut show NAME`` inside the workdir prints one's diff.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_DIRS = {
    "core": ["tests/core", "tests/storage", "tests/runtime"],
    "storage": [
        "tests/storage",
        "tests/core/test_state_machine.py",
        "tests/runtime/test_snapshot_files.py",
        "tests/test_config.py",
    ],
    "runtime": ["tests/runtime"],
}
# real servers in subprocesses run the unmutated code: useless here, and slow
IGNORED = ["tests/storage/test_crash_recovery.py", "tests/test_bench_quick.py"]
KILLED = {"killed", "timeout", "segfault"}


def mutmut_section(package: str, only: list[str]) -> str:
    patterns = only or [f"backchannel/{package}/*"]
    selection = TEST_DIRS[package]
    ignored = [f"--ignore={path}" for path in IGNORED]
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["backchannel"]\n'
        f"only_mutate = {patterns!r}\n"
        f"pytest_add_cli_args_test_selection = {selection!r}\n"
        f"pytest_add_cli_args = {['-p', 'no:cacheprovider', '-x', '-q', *ignored]!r}\n"
        "timeout_multiplier = 5.0\n"
        "max_children = 1\n"
    ).replace("'", '"')


def prepare(workdir: Path, package: str, only: list[str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("backchannel", "tests", "tools"):
        target = workdir / name
        if target.exists() and (name == "tests" or not (workdir / "mutants").exists()):
            shutil.rmtree(target)  # tests are always fresh; mutmut copies them in again
        if not target.exists():
            shutil.copytree(
                ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
    pyproject = (ROOT / "pyproject.toml").read_text()
    (workdir / "pyproject.toml").write_text(pyproject + mutmut_section(package, only))


def results(workdir: Path) -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and status:
            found[name] = status.strip()
    return found


def report(package: str, found: dict[str, str], survivors: bool) -> None:
    per_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, status in found.items():
        module = name.split(".x", 1)[0].split(".xǁ", 1)[0]
        per_file[module][status] += 1
    total: collections.Counter[str] = collections.Counter()
    for module in sorted(per_file):
        counts = per_file[module]
        total.update(counts)
        print(f"  {module:45} {rate(counts)}")
    print(f"{package}: {rate(total)}")
    if survivors:
        for name, status in sorted(found.items()):
            if status in ("survived", "no tests"):
                print(f"  {status:9} {name}")


def rate(counts: collections.Counter[str]) -> str:
    killed = sum(counts[s] for s in KILLED)
    missed = counts["survived"] + counts["no tests"]  # no test runs the mutated code
    tried = killed + missed
    other = sum(counts.values()) - tried
    pct = f"{100 * killed / tried:5.1f} %" if tried else "  n/a "
    return f"{pct} killed ({killed}/{tried}; {counts['no tests']} with no test); {other} not run"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", choices=sorted(TEST_DIRS))
    parser.add_argument("--only", action="append", default=[], help="a file glob to mutate")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--budget", type=float, help="stop after this many seconds")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="run the survivors again, by name (after new tests: copy them in first)",
    )
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    args = parser.parse_args()
    workdir = args.workdir or Path(f"/tmp/bc-mutation-{args.package}")
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.exists():
        print("mutmut is not installed: .venv/bin/pip install 'mutmut>=3.8,<4'", file=sys.stderr)
        return 2
    if not args.report_only:
        prepare(workdir, args.package, args.only)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        started = time.monotonic()
        names: list[str] = []
        if args.rerun_survivors:
            names = [n for n, status in results(workdir).items() if status == "survived"]
            print(f"running {len(names)} survivors again")
        with subprocess.Popen(
            [str(mutmut), "run", "--max-children", "1", *names],
            cwd=workdir,
            env=env,
            start_new_session=True,
        ) as process:
            try:
                process.wait(timeout=args.budget)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
                print(f"budget of {args.budget:.0f} s spent; partial results")
        print(f"mutmut ran {time.monotonic() - started:.0f} s in {workdir}")
    report(args.package, results(workdir), args.survivors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
