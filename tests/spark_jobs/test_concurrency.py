"""Concurrent writers on one lakehouse: real Delta commits from two threads of the shared
session (each thread runs its own stage and Spark jobs), so the create-table race and
ConcurrentAppendException happen as with two `lakebert` processes."""

import threading

import pytest
from delta.exceptions import ConcurrentAppendException

from spark_jobs.clean import clean
from spark_jobs.ingest import ingest
from spark_jobs.sample_data import write_sample
from spark_jobs.tables import BRONZE, QUARANTINE, SILVER, ConcurrentWriteError, resolve_table, with_delta_retries
from tests.conftest import make_config


def _at_once(*calls):
    """Run the calls in threads released together; return their results or raise the first error."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    return results


def _ids(spark, cfg, role):
    return [r[0] for r in resolve_table(cfg, role).read(spark).select("doc_id").collect()]


def test_two_ingests_into_a_new_lakehouse_at_once_both_succeed_and_each_row_is_stored_once(spark, tmp_path):
    a = write_sample(tmp_path / "a", n_docs=80, seed=31)
    b = write_sample(tmp_path / "b", n_docs=80, seed=32)
    root = tmp_path / "lh"
    cfg_a = make_config(root, f"ingest.source={a}")  # doc_id hashes the source path: the sets are disjoint
    cfg_b = make_config(root, f"ingest.source={b}")
    first, second = _at_once(lambda: ingest(spark, cfg_a, "a"), lambda: ingest(spark, cfg_b, "b"))
    for s in (first, second):
        assert s["read"] == s["inserted"] + s["duplicates"] + sum(s["quarantined"].values())
    ids = _ids(spark, cfg_a, BRONZE)
    assert len(ids) == len(set(ids)) == first["inserted"] + second["inserted"]
    quarantined = resolve_table(cfg_a, QUARANTINE).read(spark)
    assert quarantined.count() == sum(first["quarantined"].values()) + sum(second["quarantined"].values())


def test_ingest_and_clean_at_once_both_succeed_and_each_row_is_stored_once(spark, tmp_path):
    root = tmp_path / "lh"
    a = write_sample(tmp_path / "a", n_docs=80, seed=33)
    b = write_sample(tmp_path / "b", n_docs=80, seed=34)
    cfg_a, cfg_b = make_config(root, f"ingest.source={a}"), make_config(root, f"ingest.source={b}")
    ingest(spark, cfg_a, "a")
    ingested, cleaned = _at_once(lambda: ingest(spark, cfg_b, "b"), lambda: clean(spark, cfg_a, "c1"))
    assert cleaned["status"] == "done" and ingested["inserted"] > 0
    again = clean(spark, cfg_a, "c2")  # picks up whatever the first clean did not see
    bronze = _ids(spark, cfg_a, BRONZE)
    assert len(bronze) == len(set(bronze))
    silver = _ids(spark, cfg_a, SILVER)
    assert len(silver) == len(set(silver)) == cleaned["output"] + (again["output"] if again["status"] == "done" else 0)
    seen = cleaned["input"] + (again["input"] if again["status"] == "done" else 0)
    assert seen == len(bronze)  # every bronze row was cleaned exactly once


def test_conflicts_are_retried_with_backoff_then_fail_with_one_line():
    calls = []

    def conflicting():
        calls.append(1)
        if len(calls) < 3:
            raise ConcurrentAppendException("[DELTA_CONCURRENT_APPEND] Files were added by a concurrent update.\nmore")
        return "done"

    assert with_delta_retries(conflicting, "writing bronze", attempts=3, base_seconds=0.001) == "done"
    calls.clear()
    with pytest.raises(ConcurrentWriteError) as err:
        with_delta_retries(lambda: conflicting() and conflicting() and conflicting(), "writing the bronze table",
                           attempts=2, base_seconds=0.001)
    assert str(err.value).splitlines() == [str(err.value)]
    assert str(err.value).startswith("writing the bronze table: still conflicting with concurrent writers after 2")
    with pytest.raises(ValueError):  # anything else is not retried
        with_delta_retries(lambda: (_ for _ in ()).throw(ValueError("no")), "x", attempts=5, base_seconds=0.001)
