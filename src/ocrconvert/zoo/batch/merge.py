"""Merge the reports of a batch's CI shards into one ``report.json``, ``junit.xml`` and ``summary.md``.

The merged report is the one an unsharded run of the same config would have written (jobs in config order,
same counts and verdict, same exit code), apart from timings and paths. Merge refuses (exit 2), before
writing anything: a report that is not a shard's; shards of different configs, counts, plans (a different
``--timings``), overrides or tool versions; a shard given twice; a missing shard; jobs in two shards or in
none. Each shard's job logs are copied under ``OUT/logs/`` and the records point there.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...errors import UsageError
from .reports import BatchResult, JobRecord, write_reports
from .shards import read_report

_RECORD_FIELDS = set(JobRecord.__dataclass_fields__)
_SAME = (("config_sha256", "different configs", "Run every shard on the same config file."),
         ("count", "different shard counts", "Give every shard the same N in --shard K/N."),
         ("overrides", "different --seed/--timeout overrides", "Give every shard the same --seed and --timeout."),
         ("plan_sha256", "different splits of the config (--timings differs)",
          "Give every shard the same --timings report, or none."))


class MergeError(UsageError):
    default_hint = "Merge the report folders of every shard of one run: ocrconvert batch merge R1 R2 ... -o DIR."


def _shard_reports(dirs: list[Path]) -> list[tuple[Path, dict]]:
    found = []
    for d in dirs:
        doc = read_report(d)
        shard = doc.get("shard")
        if not isinstance(shard, dict):
            raise MergeError(f"{d} is the report of an unsharded run, not of a shard",
                             hint="Only reports of `ocrconvert batch CONFIG --shard K/N` merge.")
        if not (all(isinstance(shard.get(k), int) for k in ("index", "count")) and isinstance(shard.get("all_jobs"), list)
                and all(isinstance(j.get(k), str) for j in doc["jobs"] for k in ("model", "target"))):
            raise MergeError(f"{d}: its shard report is damaged (shard block or job records incomplete)",
                             hint="Use the report.json the shard's batch wrote, unedited.")
        found.append((Path(d).parent if Path(d).name == "report.json" else Path(d), doc))
    return found


def _check(reports: list[tuple[Path, dict]]) -> None:
    first_dir, first = reports[0]
    for key, what, hint in _SAME:
        for d, doc in reports[1:]:
            if doc["shard"].get(key) != first["shard"].get(key):
                raise MergeError(f"{d} and {first_dir} are shards of {what}", hint=hint)
    for d, doc in reports[1:]:
        if doc.get("versions") != first.get("versions"):
            diff = sorted(k for k in {**doc.get("versions", {}), **first.get("versions", {})}
                          if doc.get("versions", {}).get(k) != first.get("versions", {}).get(k))
            raise MergeError(f"{d} and {first_dir} ran with different tool versions ({', '.join(diff)})",
                             hint="Run every shard in the same environment (pin the packages).")
    count = first["shard"]["count"]
    seen: dict[int, Path] = {}
    for d, doc in reports:
        k = doc["shard"]["index"]
        if k in seen:
            raise MergeError(f"shard {k}/{count} is given twice: {seen[k]} and {d}",
                             hint="Give each shard's report folder once.")
        seen[k] = d
    missing = [k for k in range(1, count + 1) if k not in seen]
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{k}/{count}' for k in missing)} missing: "
                         f"only {len(seen)} of {count} shard reports given", hint="Merge the reports of every shard.")
    where: dict[str, Path] = {}
    for d, doc in reports:
        for job in doc["jobs"]:
            if job["id"] in where:
                raise MergeError(f"job {job['id']} is in two shards ({where[job['id']]} and {d}): the shards overlap",
                                 hint="Merge reports of one sharded run only.")
            where[job["id"]] = d
    lost = [j for j in first["shard"]["all_jobs"] if j not in where]
    extra = [j for j in where if j not in first["shard"]["all_jobs"]]
    if lost or extra:
        what = f"no shard ran {', '.join(lost)}" if lost else f"{', '.join(extra)} are not jobs of the config"
        raise MergeError(f"the shards do not cover the config: {what}",
                         hint="Merge the complete reports of every shard of one run.")


def _copy_log(rec: JobRecord, shard_dir: Path, logs: Path) -> None:
    """The shard's job log, found beside its report (the recorded path is the shard machine's), into ``logs``."""
    if not rec.log:
        return
    src = shard_dir / "logs" / Path(rec.log).name
    if not src.is_file():
        return
    dst = logs / src.name
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    rec.log = str(dst)


def merge_reports(dirs: list[Path], out: Path) -> BatchResult:
    """Check the shard reports in ``dirs`` form one sharded run; write the merged reports into ``out``."""
    if not dirs:
        raise MergeError("no shard reports given")
    out = Path(out).resolve()
    reports = _shard_reports([Path(d) for d in dirs])
    for d, _ in reports:
        if d.resolve() == out:
            raise MergeError(f"the output {out} is one of the shard reports", hint="Merge into another folder.")
    _check(reports)
    order = {j: i for i, j in enumerate(reports[0][1]["shard"]["all_jobs"])}
    records = sorted(((JobRecord(**{k: v for k, v in job.items() if k in _RECORD_FIELDS}), d)
                      for d, doc in reports for job in doc["jobs"]), key=lambda rd: order[rd[0].id])
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)  # only now: a refused merge writes nothing
    for rec, d in records:
        _copy_log(rec, d, logs)
    first = min((doc for _, doc in reports), key=lambda doc: doc["shard"]["index"])
    result = BatchResult(Path(first["config"]), Path(first["output"]), out, [rec for rec, _ in records],
                         max(float(doc.get("seconds") or 0.0) for _, doc in reports),
                         min(str(doc.get("started", "")) for _, doc in reports), first.get("versions") or {},
                         merged_from=[{"index": doc["shard"]["index"], "count": doc["shard"]["count"], "report": str(d),
                                       "jobs": len(doc["jobs"]), "seconds": doc.get("seconds"),
                                       "exit_code": doc.get("exit_code")}
                                      for d, doc in sorted(reports, key=lambda r: r[1]["shard"]["index"])])
    write_reports(result)
    return result


__all__ = ["merge_reports", "MergeError"]
