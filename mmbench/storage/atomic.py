"""Atomic files and folders: written to a temporary name in the same folder, fsynced, renamed into place with the
user's umask, so a process killed at any instant leaves the old file or the new one, never half of either.

Failed writes: an OSError (disk full, quota, I/O error, read-only file system, ...) at any stage of a write
(creating the temporary file, setting its mode, writing, fsyncing or closing it, moving the replaced file to its
previous slot, renaming the new one into place) removes the temporary file and raises ``WriteError``, one line
naming the cause and the file ("disk full (ENOSPC) writing RUN/checkpoint.pt"); the file it would have replaced
is left as it was. Syncing the folder after the rename is best effort (a warning when it fails): the rename is
done, and one that a crash then loses leaves the old file, still never half of one. ``append_line`` adds a line
to a JSON-lines log; an append that fails is cut back, so the log holds whole lines only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mmbench.errors import MMBenchError

logger = logging.getLogger(__name__)

# errors of the disk rather than of the file's content: what a write that fails for them leaves is resumable
DISK_ERRORS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EIO: "I/O error",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
}


class WriteError(MMBenchError, OSError):
    """A file could not be written (``reason``: "disk full (ENOSPC)", ...); the file it would have replaced is
    unchanged and no temporary file is left. ``hint`` (what the caller kept, what to do) ends the message. Also an
    OSError (with the cause's errno), so that callers that skip an unwritable cache go on skipping it."""

    def __init__(self, path: Path | str, error: OSError, hint: str = ""):
        self.path, self.error, self.hint = Path(path), error, hint
        self.reason = describe_os_error(error)
        self.line = f"{self.reason} writing {self.path}"
        self.message = self.line + (f"; {hint}" if hint else "")
        super().__init__(self.message)
        self.errno, self.strerror, self.filename = error.errno, error.strerror, str(self.path)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickled whole (a job's exception travels back to whoever submitted it)
        return (WriteError, (self.path, self.error, self.hint))

    def with_hint(self, hint: str) -> "WriteError":
        """The same failure, its message ending with ``hint``."""
        return WriteError(self.path, self.error, hint)


def describe_os_error(error: OSError) -> str:
    """ "disk full (ENOSPC)", "I/O error (EIO)", ... ; the system's words for other errors."""
    name = errno.errorcode.get(error.errno or 0, "")
    words = DISK_ERRORS.get(error.errno or 0) or (error.strerror or type(error).__name__).lower()
    return f"{words} ({name})" if name else words


def is_disk_error(error: BaseException) -> bool:
    """Whether ``error`` is one of the disk's (``DISK_ERRORS``) rather than one of a file's content."""
    return isinstance(error, WriteError) or (isinstance(error, OSError) and error.errno in DISK_ERRORS)


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """An OSError inside becomes a ``WriteError`` naming ``path``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc) from exc


def fsync_dir(folder: Path) -> None:
    """Sync ``folder``'s entries (a rename in it) to disk; best effort: a folder that cannot be opened or synced
    (a file system that does not support it, a failing disk) is a warning, the rename being done already."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            logger.warning("warning: could not sync folder %s (%s); a crash now may lose its last rename", folder, exc)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_temp_file(path: Path, data: bytes) -> Path:
    """``data`` in a new temporary file beside ``path`` (``.name.*.tmp``), fsynced and closed; WriteError, the
    temporary file removed, when any step fails."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            try:
                # mkstemp makes 0600; a file written in place would get the umask's mode
                os.fchmod(fd, 0o666 & ~current_umask())
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes, *, previous: Path | None = None) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``. With ``previous``, the file
    it replaces is first moved there (both renames atomic); when the second rename fails it is moved back."""
    path = Path(path)
    tmp = write_temp_file(path, data)
    try:
        with writing(path):
            kept = previous is not None and path.is_file()
            if kept:
                try:
                    os.replace(path, previous)
                except FileNotFoundError:  # another save of this path moved it first: its file is the previous one
                    kept = False
            try:
                os.replace(tmp, path)
            except OSError:
                if kept:
                    try:
                        os.replace(previous, path)
                    except OSError:
                        pass  # the old file stays in the previous slot, where readers look for it
                raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created with the umask's mode). A torn last line, left by a process
    killed mid-append, is cut off first; an append that fails (WriteError) is cut back to the file's length before
    it, so the file holds whole lines only."""
    path = Path(path)
    with writing(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            size = _whole_lines(fd)
            try:
                _write_all(fd, (line.rstrip("\n") + "\n").encode())
            except OSError:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass  # a torn last line, which readers skip and the next append cuts off
                raise
        finally:
            os.close(fd)


def _whole_lines(fd: int, chunk: int = 4096) -> int:
    """The length of the file's whole lines; a torn last line (no newline) is cut off."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
    return end


def require_new_folder(out: Path) -> Path:
    """``out`` as a Path, refused in one line unless it is absent or an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MMBenchError(f"output folder {out} exists and is not empty; remove it or choose another --out")
    return out


@contextmanager
def atomic_folder(out: Path, purpose: str) -> Iterator[Path]:
    """A folder written whole or not at all: the block fills a temporary folder beside ``out`` (named
    ``.<out>.<purpose>.*``), renamed to ``out`` when the block ends, removed when it raises."""
    out = require_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{purpose}."))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
