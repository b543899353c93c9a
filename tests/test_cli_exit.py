"""The command line's fast exit (cli.app.leave) still does what an exit must: the status, every line
written, atexit's handlers, files a command left open, and the threads an exit waits for."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _child(body: str, tmp_path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        """
        import atexit, sys, threading, time
        from pathlib import Path
        from imgclf.cli.app import leave
        out = Path(sys.argv[1])
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)


def test_the_status_the_output_atexit_and_a_file_a_command_left_open_all_survive(tmp_path):
    p = _child(
        """
        cli = sys.modules["imgclf.cli.app"]  # the module: imgclf.cli.app, the attribute, is the Typer app
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        def command():  # a command that left a file open as it ended: its frame closes it, once freed
            f = open(out / "left-open.txt", "w")
            f.write("kept")
            sys.stdout.write("x" * 100_000)  # buffered, never flushed by the command
            sys.exit(3)
        cli.main = command
        cli.entry()
        """,
        tmp_path,
    )
    assert p.returncode == 3, p.stderr
    assert len(p.stdout) == 100_000 and p.stderr == ""
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "left-open.txt").read_text() == "kept"


def test_a_message_exits_1_and_a_running_thread_is_waited_for(tmp_path):
    p = _child(
        """
        def slow():
            time.sleep(0.5)
            (out / "thread").write_text("done")
        threading.Thread(target=slow).start()
        leave("error: said once")
        """,
        tmp_path,
    )
    assert p.returncode == 1 and p.stderr == "error: said once\n"
    assert (tmp_path / "thread").read_text() == "done"


def test_the_real_command_line_exits_with_its_status(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "imgclf", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "Usage" in ok.stdout and "feedback" in ok.stdout.splitlines()[-1], ok.stdout[-300:]
    bad = subprocess.run(
        [sys.executable, "-m", "imgclf", "check", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
