"""Compare two batch runs' report.json job by job (e.g. a Ray run against the local run of the same config).

    python scripts/compare_batch_reports.py REFERENCE/report.json OTHER/report.json [--keys status,exit_code,...]

Prints one line per job that differs (and jobs present in only one report), then a summary; exit 0 when every
job agrees on the keys, 1 otherwise. ``node`` (which Ray node ran a job) and timings are not compared.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEYS = ("status", "exit_code", "ok", "route", "summary", "worst_max_abs", "expected")


def jobs(report: Path) -> dict[str, dict]:
    return {j["id"]: j for j in json.loads(report.read_text())["jobs"]}


def compare(ref: dict[str, dict], other: dict[str, dict], keys: tuple[str, ...]) -> list[str]:
    diffs = [f"{i}: only in the reference" for i in ref if i not in other]
    diffs += [f"{i}: only in the other run" for i in other if i not in ref]
    for i in ref.keys() & other.keys():
        for k in keys:
            if ref[i].get(k) != other[i].get(k):
                diffs.append(f"{i}: {k}: {ref[i].get(k)!r} != {other[i].get(k)!r}")
        msg = [((j.get("error") or {}).get("message")) for j in (ref[i], other[i])]
        if msg[0] != msg[1]:
            diffs.append(f"{i}: error message: {msg[0]!r} != {msg[1]!r}")
    return sorted(diffs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--keys", default=",".join(KEYS))
    args = p.parse_args(argv)
    ref, other = jobs(args.reference), jobs(args.other)
    diffs = compare(ref, other, tuple(args.keys.split(",")))
    for line in diffs:
        print(line)
    statuses = {}
    for j in other.values():
        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
    nodes = sorted({j.get("node") or "-" for j in other.values()})
    print(f"{len(ref)} jobs in the reference, {len(other)} in the other run; {len(diffs)} differences; "
          f"other run: {statuses}; nodes: {nodes}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
