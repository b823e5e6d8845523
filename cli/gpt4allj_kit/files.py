"""File primitives every stage shares: hashing, and writes that are complete or absent, never half."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady, KitError

_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create 0600/0700; results are shared files, so give them the usual umask mode."""
    os.chmod(path, mode & ~_umask())


def read_text(path: Path, what: str, kind: str = "file") -> str:
    """The UTF-8 text of a `kind` of file a user named, or a one-line ConfigError naming `what` and why."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: no such {kind}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: not UTF-8 text (byte {exc.start})") from None


def read_json(path: Path, what: str | None = None, kind: str = "JSON file") -> Any:
    """The JSON document in `path`, or a one-line ConfigError naming `what` (default: the path) and why
    it cannot be read: missing, a directory, not UTF-8, not JSON, or nested too deep for a parser."""
    what = what or str(path)
    text = read_text(path, what, kind)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what}: malformed JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{what}: nested too deeply to be read (not a file the kit or lm-eval wrote)"
        ) from None


def read_json_object(path: Path, what: str | None = None, kind: str = "JSON file") -> dict[str, Any]:
    """`read_json` of a file that must hold a JSON object (`{...}`)."""
    data = read_json(path, what, kind)
    if not isinstance(data, dict):
        raise ConfigError(f"{what or path}: expected a JSON object, got {json_type(data)}")
    return data


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words (for messages)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def json_at(data: Any, keys: tuple[str, ...], kind: type, source: object) -> Any:
    """The value at the key path `keys` of a decoded JSON document: None when absent or null, else a
    `kind` (float takes any number), or a one-line ConfigError naming `source` and the path (`a.b.c`)."""
    value = data
    for depth, key in enumerate(keys):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(keys[:depth]) or "(top level)"
            raise ConfigError(f"{source}: key '{where}': expected an object, got {json_type(value)}")
        value = value.get(key)
    if value is None or _is_a(value, kind):
        return value
    expected = "a number" if kind is float else json_type(kind())
    raise ConfigError(f"{source}: key '{'.'.join(keys)}': expected {expected}, got {json_type(value)}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _disk_full(path: Path) -> EnvironmentNotReady:
    free = shutil.disk_usage(_nearest_existing(path)).free / 2**30
    return EnvironmentNotReady(f"disk full while writing {path} ({free:.1f} GiB free): free space and re-run")


def _blocker(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` (or `path` itself) that is not a directory."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists():
            return candidate
    return None


def _nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path.cwd())


# What an OSError on a path the user chose means for them: the path is wrong (exit 2), or this machine or
# account cannot write there (exit 3). Anything else stays an internal error.
_WRONG_PATH = {
    errno.EISDIR: "is a directory, not a file",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
}
# Raised when a file stands where a directory must be (making or entering it); without such a file in the
# way it is a bug (a race, a mkdir without exist_ok).
_FILE_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST)
_NOT_WRITABLE = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def _named(exc: OSError, path: Path | None) -> Path | None:
    """The path to name: the error's own, unless it is one of the temporary siblings made for `path`."""
    if not exc.filename:
        return path
    name = Path(os.fsdecode(exc.filename))
    if path is not None and name.name.startswith((f".{path.name}.", f".tmp-{path.name}-")):
        return path
    return name


def path_error(exc: OSError, path: Path | None = None) -> KitError | None:
    """The one-line error for `exc` raised on a path (its own filename, else `path`); None when it is
    not a path problem the user can fix (a bug, or a device error)."""
    where = _named(exc, path)
    if where is None:
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _disk_full(where)
    if exc.errno in _FILE_IN_THE_WAY:
        blocker = _blocker(where)
        if blocker is None:
            return None
        return ConfigError(
            f"{where}: is a file, not a directory"
            if blocker == where
            else f"{where}: {blocker} is a file, not a directory"
        )
    if exc.errno in _WRONG_PATH:
        return ConfigError(f"{where}: {_WRONG_PATH[exc.errno]}")
    if exc.errno in _NOT_WRITABLE:
        return EnvironmentNotReady(f"{where}: {_NOT_WRITABLE[exc.errno]} (check its owner and mode)")
    return None


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turns an OSError of reading or writing under `path` (disk full, a file where a directory is needed,
    no permission, a read-only file system...) into the one line `path_error` says, naming the path."""
    try:
        yield
    except OSError as exc:
        if (error := path_error(exc, path)) is not None:
            raise error from None
        raise


def check_writable(path: Path, what: str = "", *, directory: bool) -> None:
    """A one-line error now, before any work, when `path` (a directory, or a file) could not be written
    later: a file in the way, a directory where the file goes, or no permission to create it."""
    label = f"{what} {path}" if what else str(path)
    with disk_errors(path):  # a name too long for the file system, a symlink loop
        _check_writable(path, label, directory=directory)


def _check_writable(path: Path, label: str, *, directory: bool) -> None:
    if directory and path.exists() and not path.is_dir():
        raise ConfigError(f"{label}: is a file, not a directory")
    if not directory and path.is_dir():
        raise ConfigError(f"{label}: is a directory, not a file")
    blocker = _blocker(path if directory else path.parent)
    if blocker is not None:
        raise ConfigError(f"{label}: {blocker} is a file, not a directory")
    # An existing file is replaced (atomically) from its directory, so that directory must take writes.
    home = _nearest_existing(path if directory else path.parent)
    if not os.access(home, os.W_OK | os.X_OK):
        target = "write in it" if home == path else f"create it in {home}"
        raise EnvironmentNotReady(f"{label}: not writable (cannot {target}): check its owner and mode")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with disk_errors(path):
        _atomic_write_bytes(path, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish_mode(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary sibling directory that becomes `path` only when the block ends without error.

    An existing `path` is replaced whole; a crash leaves at most a `.tmp-*` sibling, never a partial `path`.
    """
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        with disk_errors(path):
            yield tmp
            _publish_mode(tmp, 0o777)
            if path.exists():
                old = path.with_name(f".old-{path.name}-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
