import threading

import pytest

from lesion_core.errors import OperationCancelled
from lesion_core.progress import Progress, format_progress_line, parse_progress_line


def test_sub_progress_maps_onto_parent_span():
    seen = []
    progress = Progress(lambda f, m: seen.append((round(f, 6), m)))
    stage = progress.sub(0.5, 1.0).sub(0.0, 0.5)
    stage.update(0.0, "a")
    stage.update(1.0, "b")
    stage.update(7.0, "clamped")
    assert seen == [(0.5, "a"), (0.75, "b"), (0.75, "clamped")]


def test_cancel_from_another_thread_stops_the_next_update():
    progress = Progress()
    child = progress.sub(0.2, 0.4)
    worker_saw = []

    def work():
        try:
            for step in range(10_000):
                child.update(step / 10_000, "step")
                if step == 5:
                    canceller.start()
                    canceller.join()
        except OperationCancelled:
            worker_saw.append("cancelled")

    canceller = threading.Thread(target=progress.cancel)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=10)
    assert worker_saw == ["cancelled"] and child.cancelled


def test_progress_line_round_trip_and_other_lines_ignored():
    line = format_progress_line(0.4237, "training  epoch 3\n of 10")
    assert line == "lesion-suite:progress 0.424 training epoch 3 of 10"
    assert parse_progress_line(line + "\n") == (pytest.approx(0.424), "training epoch 3 of 10")
    assert parse_progress_line("some log line") is None
    assert parse_progress_line("lesion-suite:progress notanumber x") is None
