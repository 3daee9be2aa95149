"""How often the static checker (converters.edgetpu_check) agrees with the real
edgetpu_compiler, op by op, on real compiler outputs kept beside their inputs.

    python scripts/checker_agreement.py [DIR ...] [--git GITDIR[@COMMIT] ...] [--limits]

DIR (default tests/fixtures/edgetpu_real) is searched for `X_edgetpu.tflite` next to `X.tflite`;
--git reads the same pairs straight from a bare git repository (e.g. the google-coral/test_data
mirror), at COMMIT (default HEAD), skipping blobs the mirror does not hold. Which op ran where is
read from each compiled file by tensor name (edgetpu_check.placement_from_compiled). Prints a
Markdown table per model (ops agreeing / total, ops the compiler put on the Edge TPU, and what the
compiled file says about the compiler: the executable's min_runtime_version and compiler_version),
then every disagreement. --limits prints the evidence behind edgetpu_check.SIZE_LIMITS: each
governed op's size, where the compiler put it and whether a CPU placement was its own.
Exit 1 when some op disagrees.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from converters import edgetpu_check as ec  # noqa: E402
from yolo_tpu import tflite_file as tm  # noqa: E402

SUFFIX = "_edgetpu.tflite"


@dataclass(frozen=True)
class Pair:
    name: str  # path of the uncompiled model inside its source
    source: str
    model: bytes
    compiled: bytes


def pairs_in_dir(root: Path) -> list[Pair]:
    found = []
    for compiled in sorted(root.rglob(f"*{SUFFIX}")):
        model = compiled.with_name(compiled.name[: -len(SUFFIX)] + ".tflite")
        if model.exists():
            source = (os.path.relpath(root.resolve(), ROOT) if root.resolve().is_relative_to(ROOT)
                      else str(root))
            found.append(Pair(str(model.relative_to(root)), source, model.read_bytes(),
                              compiled.read_bytes()))
    return found


def pairs_in_git(spec: str) -> list[Pair]:
    gitdir, _, commit = spec.partition("@")
    commit = commit or "HEAD"

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", gitdir, *args], check=True,
                              capture_output=True).stdout

    blobs = {}
    for line in git("ls-tree", "-r", commit).decode().splitlines():
        meta, path = line.split("\t", 1)
        blobs[path] = meta.split()[2]
    found = []
    for path in sorted(p for p in blobs if p.endswith(SUFFIX)):
        src = path[: -len(SUFFIX)] + ".tflite"
        if src not in blobs:
            continue
        try:
            model, compiled = (git("cat-file", "blob", blobs[p]) for p in (src, path))
        except subprocess.CalledProcessError:  # listed, but the mirror does not hold it
            continue
        found.append(Pair(src, f"{Path(gitdir).parent.name}@{commit}", model, compiled))
    return found


@dataclass(frozen=True)
class Result:
    pair: Pair
    total: int
    agree: int
    tpu: int
    package: dict | None
    wrong: list[str]
    observations: list[ec.SizeObservation]
    error: str = ""


def measure(pair: Pair) -> Result:
    model, compiled = tm.load_model(pair.model), tm.load_model(pair.compiled)
    try:
        placement = ec.placement_from_compiled(model, compiled)
    except ec.NotCompiledFromError as exc:
        return Result(pair, 0, 0, 0, None, [], [], error=str(exc))
    report = ec.check_model(model, pair.name)
    wrong = [f"op {op.index} {op.op}: predicted {op.prediction} ({op.reason or op.warning}), "
             f"compiled {'Edge TPU' if placement[op.index] else 'CPU'}"
             for op in ec.disagreements(report, placement)]
    return Result(pair, report.total, report.total - len(wrong), sum(placement),
                  ec.edgetpu_package(pair.compiled), wrong,
                  ec.size_observations(model, placement))


def package_text(package: dict | None) -> str:
    if not package:
        return "-"
    return f"runtime >= {package['min_runtime_version']}, {package['compiler_version'] or '-'}"


def agreement_table(results: list[Result]) -> str:
    lines = ["| model | source | ops agreeing / total | on the Edge TPU (compiler) | "
             "compiled file says |", "|---|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.pair.name} | {r.pair.source} | not a pair: {r.error} | - | - |")
            continue
        lines.append(f"| {r.pair.name} | {r.pair.source} | {r.agree} / {r.total} | "
                     f"{r.tpu} / {r.total} | {package_text(r.package)} |")
    measured = [r for r in results if not r.error]
    agree, total = sum(r.agree for r in measured), sum(r.total for r in measured)
    whole = sum(r.agree == r.total for r in measured)
    lines.append(f"| **all** | | **{agree} / {total}** ({100 * agree / max(total, 1):.1f}%; "
                 f"{whole} of {len(measured)} models on every op) | | |")
    return "\n".join(lines)


def limits_table(results: list[Result]) -> str:
    lines = ["| op | model | op index | shapes | size | factor | compiler | CPU on its own |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for o in r.observations:
            if not o.mapped and not o.own:
                continue  # on the CPU after a CPU op: says nothing about its own size
            lines.append(f"| {o.op} | {r.pair.name} | {o.index} | {o.shapes} | {o.size} | "
                         f"{o.factor:g} | {'Edge TPU' if o.mapped else 'CPU'} | "
                         f"{'' if o.mapped else 'yes'} |")
    lines.append("")
    lines.append("| op | largest seen mapped | smallest seen on the CPU on its own | "
                 "SIZE_LIMITS mapped / cpu |")
    lines.append("|---|---|---|---|")
    for name, limit in ec.SIZE_LIMITS.items():
        obs = [o for r in results for o in r.observations if o.op == name]
        mapped = max((o.size for o in obs if o.mapped), default=None)
        cpu = min((o.size for o in obs if o.own), default=None)
        lines.append(f"| {name} | {mapped if mapped is not None else '-'} | "
                     f"{cpu if cpu is not None else '-'} | {limit.mapped} / {limit.cpu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/checker_agreement.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path,
                        help="directories of pairs (default tests/fixtures/edgetpu_real)")
    parser.add_argument("--git", action="append", default=[], metavar="GITDIR[@COMMIT]",
                        help="read pairs from a bare git repository")
    parser.add_argument("--limits", action="store_true", help="print the size-limit evidence")
    args = parser.parse_args(argv)
    dirs = args.dirs or ([] if args.git else [ROOT / "tests" / "fixtures" / "edgetpu_real"])
    pairs: list[Pair] = []
    for d in dirs:
        if not d.is_dir():
            print(f"checker_agreement: {d}: not a directory", file=sys.stderr)
            return 2
        pairs += pairs_in_dir(d)
    for spec in args.git:
        if not os.path.isdir(spec.partition("@")[0]):
            print(f"checker_agreement: {spec}: not a git directory", file=sys.stderr)
            return 2
        pairs += pairs_in_git(spec)
    seen: set[str] = set()
    unique = []
    for p in pairs:  # the same compiled file from two sources counts once
        digest = hashlib.sha256(p.compiled).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(p)
    results = [measure(p) for p in unique]
    print(agreement_table(results))
    wrong = [(r.pair.name, w) for r in results for w in r.wrong]
    if wrong:
        print("\nDisagreements:")
        print("\n".join(f"- {name}: {w}" for name, w in wrong))
    if args.limits:
        print()
        print(limits_table(results))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
