"""spark_jobs.console: lakebert's lines on the console, everything else (child processes too) in
the run's log; progress as one live line, or a rare line without a terminal."""

import io
import subprocess
import sys
import threading
import time

import pytest

from conf.redact import remember_secrets
from spark_jobs import console as console_module
from spark_jobs.console import LOG_LEVEL_ENV, PROGRESS_EVERY_S, Console, RunConsole, verbose_requested
from spark_jobs.session import SparkProgress


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(console_module.time, "monotonic", fake)
    return fake


def test_progress_without_a_terminal_waits_for_the_interval_then_prints_at_most_once_per_interval(clock):
    out, log = io.StringIO(), io.StringIO()
    con = Console(out, log, live=False)
    con.progress("clean: Spark tasks 1/8")
    clock.now += PROGRESS_EVERY_S - 1
    con.progress("clean: Spark tasks 2/8")
    assert out.getvalue() == ""  # a short job shows nothing
    clock.now += 1
    con.progress("clean: Spark tasks 5/8")
    clock.now += 1
    con.progress("clean: Spark tasks 6/8")
    assert out.getvalue() == "clean: Spark tasks 5/8\n"
    con.end_progress()
    con.progress("tokenize: Spark tasks 1/4")  # a new activity waits the interval again
    assert out.getvalue() == "clean: Spark tasks 5/8\n"
    assert log.getvalue().splitlines()[0] == "clean: Spark tasks 1/8"  # the log has the story too


def test_progress_on_a_terminal_is_one_line_rewritten_in_place_and_erased_before_a_said_line(clock):
    out = io.StringIO()
    con = Console(out, io.StringIO(), live=True)
    con.progress("train step 1")
    con.progress("train step 2")
    con.say("train: done")
    assert out.getvalue() == "\rtrain step 1\033[K\rtrain step 2\033[K\r\033[Ktrain: done\n"


def test_training_output_shows_rank_progress_and_lakebert_lines_and_logs_the_rest(clock):
    out, log = io.StringIO(), io.StringIO()
    con = Console(out, log, live=False)
    with con.training_output("[lakebert train]"):
        sys.stdout.write("Setting OMP_NUM_THREADS environment variable for each process\n")
        sys.stdout.write("[lakebert train] resuming from ckpt-3 (step 30/90)\n[lakebert train] step 31/90 ")
        sys.stdout.write("loss 0.5\n")
        sys.stderr.write("2026/11/22 WARNING mlflow.transformers: The model card could not be retrieved\n")
        clock.now += PROGRESS_EVERY_S
        print("[lakebert train] step 60/90 loss 0.2")
    assert out.getvalue().splitlines() == ["[lakebert train] resuming from ckpt-3 (step 30/90)",
                                           "[lakebert train] step 60/90 loss 0.2"]
    logged = log.getvalue()
    assert "OMP_NUM_THREADS" in logged and "model card" in logged and "step 31/90 loss 0.5" in logged


@pytest.mark.parametrize("flag, env, verbose", [
    (False, None, False), (True, None, True), (False, "DEBUG", True), (False, "debug", True), (False, "INFO", False),
])
def test_verbose_is_the_flag_or_log_level_debug(monkeypatch, flag, env, verbose):
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    if env:
        monkeypatch.setenv(LOG_LEVEL_ENV, env)
    assert verbose_requested(flag) is verbose


def test_without_a_run_console_details_are_printed(capsys):
    console_module.detail("# resolved config")
    console_module.say("ingest: done")
    assert capsys.readouterr().out == "# resolved config\ningest: done\n"


def test_a_quiet_run_sends_child_processes_and_python_stderr_to_the_log_and_keeps_it(tmp_path, capfd):
    final = tmp_path / "_runs" / "ingest" / "r1" / "run.log"
    remember_secrets({"spark.hadoop.fs.s3a.secret.key": "hunter2-secret"})
    run = RunConsole("ingest", verbose=False, final_path=str(final))
    with run as con:
        print("ingest: 3 rows")
        con.detail("# resolved config")
        subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr);"
                        "print('a JVM echoing hunter2-secret')"], check=True)
        print("a python warning", file=sys.stderr)
    out, err = capfd.readouterr()
    assert out == "ingest: 3 rows\n" and err == ""

    def write(path, text):
        final.parent.mkdir(parents=True)
        final.write_text(text)

    assert run.keep(write) == str(final)
    lines = final.read_text().splitlines()
    assert lines[:2] == ["ingest: 3 rows", "# resolved config"] and lines[-1] == "a python warning"
    # the child's stdout is block-buffered and its stderr is not: their order is the child's business
    assert sorted(lines[2:-1]) == ["a JVM echoing ***", "child stderr", "child stdout"]
    print("after the run")  # the console is the process's own again
    assert capfd.readouterr().out == "after the run\n"


def test_spark_progress_counts_the_tasks_of_the_running_stage(spark):
    con = Console(io.StringIO(), io.StringIO())
    con.activity = "clean"
    progress = SparkProgress(spark, con)
    job = threading.Thread(target=lambda: spark.range(0, 4, 1, 2).rdd.map(lambda x: time.sleep(3) or x).collect())
    job.start()
    try:
        line = None
        for _ in range(100):
            line = progress.line()
            if line:
                break
            time.sleep(0.1)
        assert line in ("clean: Spark tasks 0/2", "clean: Spark tasks 1/2")
    finally:
        job.join()
    assert progress.line() is None


def test_a_partial_line_waits_for_its_end_and_lines_keep_their_order():
    said = []
    sink = console_module._LineSink(said.append)
    sink.write("Loading...")
    sink.flush()
    sink.write(" done\nnext")
    assert said == ["Loading... done"]
    sink.drain()
    assert said == ["Loading... done", "next"]


def test_the_kept_log_is_rewritten_in_place_so_a_child_writing_later_leaves_no_hole(tmp_path, capfd):
    remember_secrets({"spark.hadoop.fs.s3a.secret.key": "hunter3-secret"})
    run = RunConsole("ingest", verbose=False, final_path=None)
    with run:
        print("a JVM echoing hunter3-secret", file=sys.stderr)
        late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1); print('the JVM shutting down')"])
    path = run.keep(None, publish=False)
    late.wait()
    text = open(path, encoding="utf-8").read()
    assert "\x00" not in text and "hunter3-secret" not in text
    assert text.splitlines() == ["a JVM echoing ***", "the JVM shutting down"]
