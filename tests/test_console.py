"""The terminal's hygiene (core.console): libraries' INFO logs and native code's known notices kept
out of what the user reads, everything else through untouched."""

from __future__ import annotations

import io
import logging
import os
import sys

from imgclf.core.console import per_second, quiet_logs, stderr_without


def test_quiet_logs_hides_info_inside_the_block_only(caplog):
    lib = logging.getLogger("somelib.part")
    with caplog.at_level(logging.INFO):
        with quiet_logs("somelib"):
            lib.info("chatter")
            lib.warning("a real warning")
        lib.info("after")
    assert [r.getMessage() for r in caplog.records] == ["a real warning", "after"]
    assert logging.getLogger("somelib").level == logging.NOTSET


def test_stderr_without_drops_only_the_named_lines_of_native_writes(capfd):
    with stderr_without("object store and max_restarts"):
        os.write(2, b"[E core_worker.cc] Actor X has constructor arguments in the object store and max_restarts > 0.\n")
        os.write(2, b"a native error the user must see\n")
        print("python's own line", file=sys.stderr)
    print("after", file=sys.stderr)
    err = capfd.readouterr().err
    assert "object store" not in err
    assert "a native error the user must see" in err and "python's own line" in err and "after" in err


def test_stderr_without_leaves_a_stream_not_on_descriptor_2_in_place(monkeypatch, capfd):
    notebook = io.StringIO()  # as a notebook's stderr, which is no file descriptor
    monkeypatch.setattr(sys, "stderr", notebook)
    with stderr_without("object store"):
        print("shown in the notebook", file=sys.stderr)
        os.write(2, b"object store line\nnative line\n")
    assert sys.stderr is notebook and notebook.getvalue() == "shown in the notebook\n"
    assert capfd.readouterr().err == "native line\n"


def test_rates_under_one_a_second_are_not_printed_as_zero():
    assert [per_second(r) for r in (258.4, 10.0, 3.21, 0.413, 0.0)] == ["258", "10", "3.2", "0.41", "0"]
