"""Log lines are written by a background thread: in order, soon, at once for warnings,
and all of them by the time the server has stopped."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest
from conftest import Server, stop_server, wait_until

from hoody_mount.core import logs
from hoody_mount.core.logs import DeferredHandler


@pytest.fixture
def written() -> Iterator[tuple[io.StringIO, DeferredHandler, logging.Logger]]:
    """A logger whose lines go, through a handler flushing every minute, to a string."""
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(logging.Formatter("%(levelname)s %(name)s %(created).6f %(message)s"))
    handler = DeferredHandler([target], every=60)
    logger = logging.getLogger("test.deferred")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield out, handler, logger
    logger.removeHandler(handler)
    handler.close()


def test_lines_wait_for_the_thread_and_warnings_wake_it(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, _, logger = written
    logger.info("first %s", "line")
    logs.later(logger, "second %s", "line")
    time.sleep(0.3)
    assert out.getvalue() == "", "written before the flush (every 60 s) or a warning"
    logger.warning("third")
    assert wait_until(lambda: "third" in out.getvalue(), 5), "a warning did not wake the writer"
    lines = out.getvalue().splitlines()
    assert [line.split(maxsplit=3)[3] for line in lines] == ["first line", "second line", "third"]
    assert [line.split()[0] for line in lines] == ["INFO", "INFO", "WARNING"]


def test_close_writes_what_is_left_and_stops_the_thread(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, handler, logger = written
    for i in range(1000):
        logs.later(logger, "line %d", i)
    handler.close()
    assert out.getvalue().splitlines()[-1].endswith("line 999")
    assert len(out.getvalue().splitlines()) == 1000
    assert not handler._thread.is_alive()


def test_a_later_line_keeps_the_time_it_was_logged(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, handler, logger = written
    before = time.time()
    logs.later(logger, "timed")
    after = time.time()
    time.sleep(0.2)
    handler.flush()
    created = float(out.getvalue().split()[2])
    assert before <= created <= after


def test_messages_are_fixed_when_logged(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, handler, logger = written
    changing = ["before"]
    logger.info("value %s", changing)
    changing[0] = "after"
    handler.flush()
    assert "['before']" in out.getvalue()


def test_a_disabled_logger_queues_nothing(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, handler, logger = written
    logger.setLevel(logging.WARNING)
    logs.later(logger, "hidden")
    assert not handler.queue
    handler.flush()
    assert out.getvalue() == ""


def test_without_the_thread_later_logs_at_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_installed", None)
    with caplog.at_level(logging.INFO, logger="test.direct"):
        logs.later(logging.getLogger("test.direct"), "now %s", "here")
    assert [r.getMessage() for r in caplog.records] == ["now here"]


def test_every_change_is_in_the_log_once_the_server_stopped(server: Server) -> None:
    """A server stopped right after many changes has written an audit line for each."""
    count = 300
    commands = "".join(f"mkdir /share/d{i}\n" for i in range(count))
    result = server.sftp_batch(commands)
    assert result.returncode == 0, result.stderr
    stop_server(server.process)
    log = server.log.read_text()
    missing = [i for i in range(count) if f'op=mkdir path="/share/d{i}"\n' not in log]
    assert not missing, f"{len(missing)} audit lines missing, first: d{missing[0]}"


def test_a_bad_format_is_reported_not_raised(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, handler, logger = written
    bad = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "two %s %s", ("one",), None)
    handler.handle(bad)  # as the standard handlers do: report, go on
    logger.info("next")
    handler.flush()
    assert out.getvalue().rstrip().endswith("next")
    assert "Logging error" in capsys.readouterr().err


def test_lines_after_close_are_written_at_once(
    written: tuple[io.StringIO, DeferredHandler, logging.Logger],
) -> None:
    out, handler, logger = written
    handler.close()
    logger.info("late line")  # e.g. a worker finishing a change during shutdown
    assert out.getvalue().rstrip().endswith("late line")
