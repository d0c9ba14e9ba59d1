"""Progress off a terminal: a log line at most every interval and at the end, with a clock the test moves."""

import io

from ulmfit.progress import Progress, duration
from ulmfit.text import tokenize_texts


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_off_a_terminal_a_line_at_most_every_interval_and_at_the_end():
    clock, out = Clock(), io.StringIO()
    with Progress(100, "LM epoch 1/1", None, interval=30, clock=clock, stream=out) as bar:
        for i in range(100):
            clock.t += 1.0  # one second per step
            bar.update(1, 1000, 5.0 - i / 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60 and 90 s, and at the end
    assert lines[0] == "LM epoch 1/1 step 30/100 loss 4.710 1,000 tok/s elapsed 30s ETA 1m10s"
    assert lines[-1] == "LM epoch 1/1 step 100/100 loss 4.010 1,000 tok/s elapsed 1m40s ETA 0s"


def test_a_resumed_loop_counts_its_rate_and_eta_from_where_it_restarted():
    clock, out = Clock(), io.StringIO()
    bar = Progress(100, "classifier epoch 2/6", None, done=60, unit="docs", interval=30, clock=clock, stream=out)
    clock.t = 40.0
    bar.update(20, 320, 0.5)
    assert out.getvalue() == "classifier epoch 2/6 step 80/100 loss 0.500 8 docs/s elapsed 40s ETA 40s\n"


def test_false_shows_nothing_and_true_a_bar_without_log_lines():
    clock, out = Clock(), io.StringIO()
    with Progress(10, "x", False, clock=clock, stream=out) as bar:
        clock.t = 100.0
        bar.update(10)
    assert out.getvalue() == ""
    with Progress(10, "x", True, clock=clock, stream=out) as bar:
        clock.t = 200.0
        bar.update(10)
    assert "/10 [" in out.getvalue() and "ETA" not in out.getvalue()  # tqdm's bar, no log line


def test_duration():
    assert [duration(s) for s in (0, 59.4, 60, 185, 3600, 7620)] == ["0s", "59s", "1m00s", "3m05s", "1h00m", "2h07m"]


def test_tokenization_logs_its_progress_to_stderr_off_a_terminal(capsys):
    tokenize_texts(["Hello world.", "Another one!"] * 5, workers=1)
    line = capsys.readouterr().err.strip()
    assert line.startswith("tokenize docs 10/10 ") and "docs/s" in line and "ETA 0s" in line
