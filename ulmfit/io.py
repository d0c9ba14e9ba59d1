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


class DataError(ValueError):
    """Data could not be loaded or used; the message names the item at fault and the fix."""


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not fit the model being built."""


class OutputError(OSError):
    """An output could not be written; the previous version (if any) is intact."""

    def __str__(self):
        return self.strerror


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success rename it over `path`, with the mode a plain open() gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 would keep colleagues and other uids out
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


MARKER = ".ulmfit-step"  # in every output folder: the step that wrote it, then the names it wrote, one a line


def foreign(path, step, layout=()):
    """The names in folder `path` that replacing it would lose and that are not an earlier output of `step` (all of
    them where another step or nobody wrote it): none for a missing or empty folder, or one holding this step's
    marker and only the names the marker lists (a marker of older code, listing none: names matching `layout`)."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_dir():
        return [path.name]
    names = sorted(set(os.listdir(path)) - {MARKER})
    lines = (path / MARKER).read_text().split("\n") if (path / MARKER).is_file() else []
    if not lines or lines[0].strip() != step:
        return names
    written = set(filter(None, lines[1:]))
    return [n for n in names if n not in written and not (not written and any(fnmatch(n, pat) for pat in layout))]


def check_output(path, step, layout=(), inputs=()):
    """Refuse an output folder whose replacement would delete anything but this step's own output."""
    path = Path(path).resolve()
    for source in inputs:
        if source and (path == Path(source).resolve() or path in Path(source).resolve().parents):
            raise OutputError(errno.EEXIST, f"the output folder {path} holds this step's input {source}; nothing was "
                                            f"deleted. Write to a new folder, e.g. {path / step}")
    lost = foreign(path, step, layout)
    if lost:
        what = "is a file" if not path.is_dir() else f"holds {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}, which {step} did not write"
        raise OutputError(errno.EEXIST, f"the output folder {path} {what}; nothing was deleted. Move those out or "
                                        f"choose a new or empty folder, e.g. {path / step}")


def check_result_file(path, step):
    """Refuse to write the JSON result of `step` over a file that is not an earlier result of it (an input, a model,
    anyone's document), naming it; nothing is changed."""
    path = Path(path)
    if not path.exists():
        return
    try:
        own = json.loads(path.read_text()).get("step") == step
    except (ValueError, UnicodeDecodeError, AttributeError, OSError):
        own = False
    if not own:
        raise OutputError(errno.EEXIST, f"{path} exists and is not an earlier result of {step}; nothing was written. "
                                        f"Choose a new file name, e.g. {path.with_name(step + '.json')}")


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
    """Remove the temporary and backup folders a killed run of `step` left beside `path` (those holding its marker)."""
    for kind in ("tmp", "old"):
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.????????.{kind}"):  # mkdtemp: 8 random characters
            if tmp.is_dir() and (tmp / MARKER).is_file() and (tmp / MARKER).read_text().split("\n")[0].strip() == step:
                remove_tree(tmp)


@contextmanager
def atomic_dir(path, step, layout=(), inputs=()):
    """Yield a temporary directory beside `path`; on success it replaces `path` as a whole.

    `path` must be missing, empty or an earlier output of `step` (see foreign) and must not
    hold any of `inputs`; otherwise nothing is touched and OutputError names the folder. On any
    error the temporary directory is removed and the previous `path` is left untouched, so a
    failed step never leaves a half-written output directory.
    """
    path = Path(os.path.abspath(path))  # `--out .` names the current folder
    check_output(path, step, layout, inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path, step)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp's 0700 would survive the rename
    except PermissionError as e:
        raise OutputError(errno.EACCES, f"cannot write the output folder {path}: permission denied in {path.parent}; "
                                        "choose an output folder you can write to or fix its permissions") from e
    old = None
    try:
        (tmp / MARKER).write_text(step + "\n")
        yield tmp
        (tmp / MARKER).write_text("\n".join([step, *sorted(set(os.listdir(tmp)) - {MARKER})]) + "\n")
        if path.exists():  # a backup name of this step's own making: a user's folder can never be it
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old:
            remove_tree(old)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    """A JSON file's contents; a missing, unreadable or damaged file is a DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path} does not exist; run the step that writes it (prepare, for a dataset folder)") from e
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path} is damaged or not JSON ({' '.join(str(e).split())[:120]}); restore it or run the "
                        "step that wrote it again") from e


def save_torch(path, obj):
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch reports a full disk as "[enforce fail at inline_container.cc] ... unexpected pos"
            if "unexpected pos" not in str(e) and "file write failed" not in str(e):
                raise
            raise OSError(errno.ENOSPC, "No space left on device") from e
