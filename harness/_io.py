"""File output: atomic (a reader sees the old file or the whole new one, never half of one), with
the permissions of any other tool's files (the umask), and strict JSON.

Every file the harness writes goes through `atomic_path`; every JSON it writes through `to_json`,
which refuses NaN and infinities: a value that is not a finite number is written as null, with the
reason beside it (`strict_json`).

A process killed while it writes (SIGKILL, a power cut) cannot remove its temporary file. The name of
each holds the writer's process id, so that the next run into the folder removes those whose writer
is gone (`remove_stale_temporaries`) and never one that a concurrent run is still writing. An output
folder that a command created and then refused its input in (`output_folder`) is removed again.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import HarnessInputError

# Only tests set this, to simulate a full disk or a read-only folder where no file system can be
# mounted (and root ignores permission bits): "ENOSPC:report.md" makes writing that file fail with
# ENOSPC, "EROFS:*" makes every write fail with EROFS, the folder check included.
FAULT_ENV = "HARNESS_TEST_WRITE_FAULT"


def ensure_writable_dir(path) -> Path:
    """Create `path` if needed and check that files can be written in it (HarnessInputError if not)."""
    if str(path) == "":
        raise HarnessInputError("--out '': expected a folder name (the empty name would mean the current folder)")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _inject_fault(path / ".write-test")
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise HarnessInputError(f"output folder {str(path)!r} is not writable: {err.strerror}") from None
    remove_stale_temporaries(path)
    return path


def _first_missing(path: Path) -> Path | None:
    """The outermost of `path` and its parents that does not exist yet (None if `path` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


@contextmanager
def output_folder(path):
    """`ensure_writable_dir(path)` for the block; if the block refuses its input (HarnessInputError)
    the folders this call created are removed again, so that a mistake leaves nothing behind."""
    path = Path(path) if str(path) else path
    created = _first_missing(path) if isinstance(path, Path) else None
    folder = ensure_writable_dir(path)
    try:
        yield folder
    except HarnessInputError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


# `.{name}.{pid}.{random}.tmp`: `atomic_path`'s temporary files (mkstemp's random part has no dot)
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files of writers that died (killed mid-write) in `folder` and in its
    subfolders one level down (`cells/`); returns the paths removed. A file whose writer is alive
    (a concurrent run) is left alone."""
    folder, removed = Path(folder), []
    for candidate in (*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp")):
        match = _TEMPORARY.match(candidate.name)
        if match is None or int(match["pid"]) == os.getpid() or _process_alive(int(match["pid"])):
            continue
        try:
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


def _umask() -> int:
    # os.umask can only be read by setting it; done once per write, which is cheap beside the write
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inject_fault(path: Path) -> None:
    fault = os.environ.get(FAULT_ENV)
    if not fault:
        return
    name, _, target = fault.partition(":")
    if target in ("*", path.name):
        code = getattr(errno, name)
        raise OSError(code, os.strerror(code), str(path))


@contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success it is renamed over `path`.

    The file gets mode 0666 minus the umask, as `open` would give it (mkstemp's 0600 would make
    reports unreadable to colleagues on a shared machine). On any failure the temporary file is
    removed and `path` is left as it was.
    """
    path = Path(path)
    # the writer's pid in the name: `remove_stale_temporaries` knows whose it is
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _inject_fault(path)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a writer (matplotlib's) that failed without naming the file
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def strict_json(value, reasons: dict | None = None, where: str = ""):
    """`value` with numpy types made plain and every NaN or infinity replaced by None.

    Parameters
    ----------
    value : nested dicts, lists, tuples, numpy arrays and scalars
    reasons : dict, optional
        Filled with {JSON path: "NaN" / "Infinity" / "-Infinity"} for each value replaced, so the
        writer can say why a number is null.
    """
    if isinstance(value, dict):
        return {k: strict_json(v, reasons, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, reasons, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist(), reasons, where)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isfinite(value):
            return value
        if reasons is not None:
            reasons[where] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return None
    return value


def to_json(value) -> str:
    """Strict JSON text (never NaN or Infinity). Non-finite numbers become null; if any did and
    `value` is a dict, a "non_finite" entry lists where and what they were."""
    reasons: dict = {}
    plain = strict_json(value, reasons)
    if reasons and isinstance(plain, dict):
        plain["non_finite"] = reasons
    return json.dumps(plain, indent=2, allow_nan=False)


def write_json(path, value) -> None:
    write_text(path, to_json(value) + "\n")


def save_figure(fig, path, dpi: int = 120, crop: bool = True) -> None:
    """Save a matplotlib figure atomically as PNG and close it. `crop` trims the PNG to what is drawn
    (matplotlib's ``bbox_inches="tight"``, which draws the figure twice): for figures whose layout is
    computed, or that draw outside their axes' grid; a figure laid out by hand passes False."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight" if crop else None)
    finally:
        plt.close(fig)
