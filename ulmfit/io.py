"""Atomic file writes: every output goes to a temporary file in the same directory, then is
renamed over the target, so a crash or a full disk never leaves a half-written file and never
destroys the previous version."""

import errno
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path


class OutputError(OSError):
    """An output could not be written; the previous version (if any) is intact."""

    def __str__(self):
        return self.strerror


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


MARKER = ".ulmfit-step"  # written into every output folder: the name of the step that wrote it


def is_own_output(path, step, layout=()):
    """True if replacing `path` loses nothing but an earlier output of `step`: it is missing or
    empty, carries this step's marker, or (older outputs, written before the marker) holds the
    step's key file layout[0] and nothing but names matching `layout`."""
    path = Path(path)
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    names = os.listdir(path)
    if MARKER in names:
        return (path / MARKER).read_text().strip() == step
    if not names:
        return True
    return bool(layout) and layout[0] in names and all(any(fnmatch(n, pat) for pat in layout) for n in names)


def check_output(path, step, layout=(), inputs=()):
    """Refuse an output folder whose replacement would delete anything but this step's own output."""
    path = Path(path).resolve()
    for source in inputs:
        if source and (path == Path(source).resolve() or path in Path(source).resolve().parents):
            raise OutputError(errno.EEXIST, f"the output folder {path} holds this step's input {source}; nothing was "
                                            f"deleted. Write to a new folder, e.g. {path / step}")
    if not is_own_output(path, step, layout):
        raise OutputError(errno.EEXIST, f"the output folder {path} is not empty and is not an earlier output of {step}; "
                                        f"nothing was deleted. Choose a new or empty folder, e.g. {path / step}")


def remove_tree(path):
    """Remove a folder this code wrote, making it writable first where its permissions were made read-only."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        os.chmod(path, 0o700)
        for root, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
        shutil.rmtree(path)


def remove_leftovers(path, step):
    """Remove the temporary folders a killed run of `step` left beside `path` (those holding its marker)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.????????.tmp"):  # mkdtemp: 8 random characters
        if tmp.is_dir() and (tmp / MARKER).is_file() and (tmp / MARKER).read_text().strip() == step:
            remove_tree(tmp)


@contextmanager
def atomic_dir(path, step, layout=(), inputs=()):
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole.

    `path` must be missing, empty or an earlier output of `step` (see is_own_output) and must not
    hold any of `inputs`; otherwise nothing is touched and OutputError names the folder. On any
    error the temporary directory is removed and the previous `path` is left untouched, so a
    failed step never leaves a half-written output directory.
    """
    path = Path(path)
    check_output(path, step, layout, inputs)
    old = path.with_name(f".{path.name}.old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path, step)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except PermissionError as e:
        raise OutputError(errno.EACCES, f"cannot write the output folder {path}: permission denied in {path.parent}; "
                                        "choose an output folder you can write to or fix its permissions") from e
    try:
        (tmp / MARKER).write_text(step + "\n")
        yield tmp
        remove_tree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        remove_tree(old)
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
