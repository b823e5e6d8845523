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

from gpt4allj_kit.errors import ConfigError, EnvironmentNotReady

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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _disk_full(path: Path, exc: OSError) -> EnvironmentNotReady:
    free = shutil.disk_usage(path if path.exists() else path.parent).free / 2**30
    return EnvironmentNotReady(f"disk full while writing {path} ({free:.1f} GiB free): free space and re-run")


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turns ENOSPC/EDQUOT into a one-line EnvironmentNotReady naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, exc) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with disk_errors(path), os.fdopen(fd, "wb") as fh:
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
