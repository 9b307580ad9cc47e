"""Reading .npz archives (problem files, checkpoints) safely: what is not one, what would not fit and
what would expand out of all proportion is refused in one line before anything is decompressed.

An .npz is a zip of .npy arrays, and each .npy member starts with a small header declaring its dtype
and shape. `read_npz` reads only the zip's directory and those headers first:

- a file that is not a zip (a text file, a pickle, a truncated archive: the directory is at the end)
  is refused as such, instead of numpy's advice to load it "unsafely using allow_pickle";
- a member that is not a .npy array, holds Python objects, or declares another size in the zip
  than its header does is refused (the zip's declared size is what decompression is held to);
- the declared sizes are checked against the caller's limits (the memory available, the shapes the
  other arrays imply) and each large member's expansion against `MAX_EXPANSION`: a 512 KB zip bomb
  declaring 600 MB of zeros is refused before it is expanded.

Only then are the arrays read, with `allow_pickle=False`.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import HarnessInputError

# A member declaring more than this many times its compressed size (above `EXPANSION_FLOOR` bytes)
# is refused: numbers anyone measured or simulated compress a few fold at most (savez stores them
# uncompressed, savez_compressed gains ~10 % on float64), and only near-constant bytes reach the
# hundreds that deflate allows (up to ~1032). Small members are exempt: a 1 MB mask of ones may.
MAX_EXPANSION = 100
EXPANSION_FLOOR = 16 * 2**20


@dataclass(frozen=True)
class Member:
    """One array as its .npy header declares it."""

    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _describe_size(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.3g} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.3g} GiB"


def read_headers(path, label: str) -> dict[str, Member]:
    """{key: Member} from the archive's directory and .npy headers, decompressing nothing else.

    HarnessInputError (one line, naming `label`) for anything that is not an .npz of plain arrays.
    """
    path = Path(path)
    not_npz = (f"{label} is not a .npz archive (not a zip file, or a truncated one): expected arrays "
               "written by numpy.savez")
    try:
        if not zipfile.is_zipfile(path):
            raise HarnessInputError(not_npz)
        members = {}
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise HarnessInputError(f"{label} holds {info.filename!r}, which is not a .npy array: "
                                            "expected an archive written by numpy.savez")
                key = info.filename[: -len(".npy")]
                with archive.open(info) as handle:
                    member, header_bytes = _read_header(handle, f"{label}: array {key!r}")
                if info.file_size != header_bytes + member.nbytes:
                    raise HarnessInputError(
                        f"{label}: array {key!r} declares {member.shape} {member.dtype} "
                        f"({member.nbytes} bytes) but the archive {info.file_size - header_bytes} bytes: "
                        "a damaged or forged file")
                if info.file_size > EXPANSION_FLOOR and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
                    raise HarnessInputError(
                        f"{label}: array {key!r} would expand from {_describe_size(info.compress_size)} to "
                        f"{_describe_size(info.file_size)} ({info.file_size / max(info.compress_size, 1):.0f}x, "
                        f"above {MAX_EXPANSION}x): near-constant data or a zip bomb; not decompressed")
                members[key] = member
        return members
    except HarnessInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise HarnessInputError(f"{not_npz} ({type(err).__name__}: {err})") from None


def _read_header(handle, what: str) -> tuple[Member, int]:
    """The Member a .npy stream declares, and the header's length in bytes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as err:
        raise HarnessInputError(f"{what} is not a readable .npy array ({err})") from None
    if dtype.hasobject:
        raise HarnessInputError(f"{what} holds Python objects (pickled data), which are never loaded: "
                                "expected numbers or strings")
    return Member(tuple(int(d) for d in shape), dtype), handle.tell()


def read_npz(path, label: str, *, max_bytes: int | None = None, check=None) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`, after `read_headers` and the caller's checks.

    max_bytes : refuse an archive whose arrays together declare more.
    check : callable({key: Member}), raising HarnessInputError for declared shapes it cannot accept
        (called before anything is decompressed).
    """
    members = read_headers(path, label)
    total = sum(member.nbytes for member in members.values())
    if max_bytes is not None and total > max_bytes:
        raise HarnessInputError(f"{label} declares {_describe_size(total)} of arrays, above the "
                                f"{_describe_size(max_bytes)} it may take here; not decompressed")
    if check is not None:
        check(members)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise HarnessInputError(f"{label} is damaged ({type(err).__name__}: {err})") from None
