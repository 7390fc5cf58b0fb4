"""Batch conversion of many models × targets for CI: isolated jobs, timeouts, resume, reports.

A YAML config (``config``: ``yaml.safe_load``, strict schema, route options validated by each
route's own options record) lists models (zoo names or paths) and targets; every (model, target)
pair is a job. ``scheduler.run_batch`` runs each job in its own worker process (``worker``: one job
through ``pipeline.convert``), in its own process group, so a crash, a segfault or a hang in one
model cannot stop the others. ``fingerprint`` decides what ``--resume`` may skip; ``reports`` writes
``report.json``, ``junit.xml`` and ``summary.md``; ``killpoints`` are the deterministic SIGKILL
points the resume tests use. ``shards`` splits a config into CI shards (``--shard K/N``) and ``merge`` joins
their reports into the unsharded run's (docs/ci-shards.md).

Exit code of a batch (``BatchResult.exit_code``):
  0  every job passed, was resumed, or failed exactly as its config ``expect``\\ s;
  6  at least one job failed parity (its artifact does not match the source);
  5  otherwise, at least one job failed for any other reason (conversion error, unsupported
     model or ops, missing dependency, crash, timeout, or an expected failure that passed);
  2  the config itself is invalid (raised before any job starts, as ``UsageError``).
Each job's own exit code and error (message, hint, unsupported ops) are in ``report.json``.
"""
from .config import (DEFAULT_TIMEOUT, TARGETS, BatchConfig, BatchConfigError, Expectation, JobSpec, load_config,
                     parse_config)
from .fingerprint import artifact_path, fingerprint, source_digest, tool_versions, verified_on_disk
from .reports import REPORT_SCHEMA_VERSION, BatchResult, JobRecord, junit_xml, summary_md, write_reports
from .scheduler import STATE_DIR, RunContext, run_batch

__all__ = ["run_batch", "load_config", "parse_config", "BatchConfig", "BatchConfigError", "JobSpec", "Expectation",
           "JobRecord", "BatchResult", "RunContext", "write_reports", "junit_xml", "summary_md", "verified_on_disk",
           "fingerprint", "source_digest", "tool_versions", "artifact_path", "STATE_DIR", "TARGETS",
           "DEFAULT_TIMEOUT", "REPORT_SCHEMA_VERSION"]
