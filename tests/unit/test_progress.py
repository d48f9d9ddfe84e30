"""Progress of long steps: lines in a log at an interval, with count, rate and time left."""

import logging

from tfl._progress import Progress, _duration


def test_a_log_gets_count_rate_and_time_left(capsys):
    progress = Progress("backbone features", 100, interval=0.0)
    progress.tty = False  # a log file, not a terminal
    for _ in range(4):
        progress.update(25)
    progress.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[tfl] backbone features")]
    assert len(lines) == 4
    assert lines[0].startswith("[tfl] backbone features: 25/100 images, ") and "images/s" in lines[0]
    assert "left" in lines[0] and "left" not in lines[-1]  # nothing is left at 100/100


def test_short_steps_print_nothing_on_a_log(capsys):
    progress = Progress("checking image files", 10, "files", interval=60.0)
    progress.tty = False
    progress.update(10)
    progress.close()
    assert "checking image files" not in capsys.readouterr().err


def test_the_tfl_logger_can_silence_it(capsys):
    logger = logging.getLogger("tfl")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        progress = Progress("stage 1", 2, interval=0.0)
        progress.tty = False
        progress.update(1)
    finally:
        logger.setLevel(level)
    assert "stage 1" not in capsys.readouterr().err


def test_durations_read_as_people_write_them():
    assert [_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]
