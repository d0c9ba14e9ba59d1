"""Atomic file writes: every output goes to a temporary file in the same directory, then is
renamed over the target, so a crash or a full disk never leaves a half-written file and never
destroys the previous version."""

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


class OutputError(OSError):
    """An output could not be written; the previous version (if any) is intact."""


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            free = shutil.disk_usage(path.parent).free
            raise OutputError(
                errno.ENOSPC,
                f"no space left on the device writing {path} ({free / 1e6:.0f} MB free); "
                "the previous version is kept. Free some disk space (for example `dvc gc`) and run again",
            ) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole.

    On any error the temporary directory is removed and the previous `path` is left untouched,
    so a failed step never leaves a half-written output directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def save_torch(path, obj):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
