"""Progress of a long loop: a tqdm bar on a terminal, log lines elsewhere.

Under `dvc repro` (or with output sent to a file) no stream is a terminal and a tqdm bar would be
hidden, so the loop instead writes one line to stderr at most every `interval` seconds and when it
closes, e.g. `LM epoch 1/1 step 1,200/4,000 loss 4.812 15,210 tok/s elapsed 1m20s ETA 3m05s`.
"""

import sys
import time

from tqdm.auto import tqdm

LOG_INTERVAL = 30  # seconds between two progress lines when not on a terminal


def duration(seconds):
    """'45s', '3m05s' or '2h07m'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts `total` steps of a loop, `done` of them finished before it started (a resumed run).

    show: None shows a bar on a terminal and log lines elsewhere, True always a bar, False nothing.
    update(n, items, loss) counts n steps that processed `items` (tokens, documents) and the loss so far.
    """

    def __init__(self, total, desc, show=None, done=0, count="step", unit="tok", interval=LOG_INTERVAL,
                 clock=time.monotonic, stream=None):
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        self.bar = None
        if show or (show is None and terminal):
            self.bar = tqdm(total=total, desc=desc, leave=False, mininterval=2, initial=done, file=self.stream)
        self.logs = show is None and not terminal
        self.total, self.desc, self.count, self.unit, self.interval, self.clock = total, desc, count, unit, interval, clock
        self.n = self.start = done
        self.items, self.loss = 0, None
        self.began = self.last = clock()

    def update(self, n=1, items=0, loss=None):
        self.n += n
        self.items += items
        self.loss = loss
        if self.bar is not None:
            self.bar.update(n)
        elif self.logs and self.clock() - self.last >= self.interval:
            self.log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.logs:
            self.log()

    def line(self):
        elapsed = self.clock() - self.began
        done = self.n - self.start
        eta = (self.total - self.n) * elapsed / done if done else 0.0
        parts = [self.desc, f"{self.count} {self.n:,}/{self.total:,}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        parts += [f"{self.items / elapsed if elapsed > 0 else 0.0:,.0f} {self.unit}/s", f"elapsed {duration(elapsed)}",
                  f"ETA {duration(eta)}"]
        return " ".join(parts)

    def log(self):
        self.last = self.clock()
        print(self.line(), file=self.stream, flush=True)
