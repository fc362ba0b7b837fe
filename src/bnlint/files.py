"""Reading inputs with clear messages, and writing outputs atomically.

Every command reads through `read_text`/`read_bytes` and writes through
`write_atomic`, so bad paths always get the same message and a failed run never
leaves a half-written file or touches its input.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from bnlint.errors import BnlintError
from bnlint.source import SourceFile

STDIO = "-"


# Caffe reads no protobuf file bigger than this (kProtoReadBytesLimit, INT_MAX): a
# larger input is refused before it is read, instead of filling the memory.
MAX_INPUT_BYTES = 2**31 - 1


def read_bytes(path: str) -> bytes:
    if path == STDIO:
        return _read_limited(sys.stdin.buffer, "<stdin>")
    p = Path(path)
    try:
        if p.is_dir():
            raise BnlintError("is a directory, not a file", path=path)
        with open(p, "rb") as fh:
            info = os.fstat(fh.fileno())
            if stat.S_ISBLK(info.st_mode) or (stat.S_ISCHR(info.st_mode)
                                              and not os.isatty(fh.fileno())):
                # /dev/zero, /dev/urandom, disks: endless or huge, never a Caffe file
                raise BnlintError("is a device, not a file", path=path)
            if stat.S_ISREG(info.st_mode):
                if info.st_size > MAX_INPUT_BYTES:
                    raise _too_big(path)
                return fh.read()
            return _read_limited(fh, path)      # a pipe (`<(...)`, a FIFO): size unknown
    except FileNotFoundError:
        if p.is_symlink():
            raise BnlintError("broken symbolic link (its target does not exist)",
                              path=path) from None
        raise BnlintError("no such file", path=path) from None
    except PermissionError:
        raise BnlintError("permission denied (cannot read)", path=path) from None
    except IsADirectoryError:
        raise BnlintError("is a directory, not a file", path=path) from None
    except OSError as err:
        raise BnlintError(f"cannot read: {err.strerror or err}", path=path) from None


def _too_big(path: str) -> BnlintError:
    return BnlintError(f"larger than {MAX_INPUT_BYTES:,} bytes, the most Caffe reads "
                       f"(kProtoReadBytesLimit)", path=path)


def _read_limited(stream, path: str) -> bytes:
    """All of a stream of unknown size, refused once it passes MAX_INPUT_BYTES."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_INPUT_BYTES:
            raise _too_big(path)
        chunks.append(chunk)


def decode_text(data: bytes, path: str) -> SourceFile:
    """UTF-8 text, newlines untouched (so output can reproduce the input byte for byte)."""
    try:
        return SourceFile(path, data.decode("utf-8"))
    except UnicodeDecodeError as err:
        good = data[:err.start].decode("utf-8", errors="replace")
        src = SourceFile(path, good)
        raise BnlintError(f"not UTF-8 text (byte 0x{data[err.start]:02x} cannot be decoded); "
                          f"is this a binary file?", source=src, offset=len(good)) from None


def read_text(path: str) -> SourceFile:
    return decode_text(read_bytes(path), "<stdin>" if path == STDIO else path)


def write_atomic(path: str, data: bytes | str, *, inputs: tuple[str, ...] = (),
                 in_place: bool = False, in_place_option: bool = False) -> None:
    """Write to a temporary file in the target's folder, then rename over the target.

    Refuses to overwrite one of `inputs` unless `in_place`; keeps an existing
    target's permission bits.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if not in_place:
        for inp in inputs:
            if inp != STDIO and _same_file(inp, path):
                raise BnlintError("output would overwrite the input; choose another -o"
                                  + (" or pass --in-place" if in_place_option else ""),
                                  path=path)
    if target.is_dir():
        raise BnlintError("output path is a directory", path=path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise BnlintError(f"output folder {str(folder)!r} does not exist", path=path)
    mode = None
    try:
        info = os.stat(path)
        mode = stat.S_IMODE(info.st_mode)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None
    else:
        if not stat.S_ISREG(info.st_mode):
            # /dev/null, a FIFO, `-o >(gzip > f)`: renaming over it would replace the
            # device or pipe with a plain file, so it is written to as it is
            _write_special(path, data)
            return
    import tempfile

    if target.is_symlink():
        # write through the link: the temporary file must sit beside the real file,
        # or the final rename would cross file systems
        target = target.resolve()
        folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        raise BnlintError("permission denied (cannot write in its folder)", path=path) from None
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            # disk full, quota, a read-only or vanished folder: the target is untouched
            raise BnlintError(f"cannot write: {exc.strerror or exc}", path=path) from None
        raise


def _write_special(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
