"""Reading inputs with clear messages, and writing outputs atomically.

Every command reads through `read_text`/`read_bytes` and writes through
`write_atomic`, so bad paths always get the same message and a failed run never
leaves a half-written file or touches its input.
"""

from __future__ import annotations

import io
import os
import re
import signal
import stat
import sys
from pathlib import Path

from bnlint.errors import BnlintError
from bnlint.source import SourceFile

STDIO = "-"


# Caffe reads no protobuf file bigger than this (kProtoReadBytesLimit, INT_MAX): a
# larger input is refused before it is read, instead of filling the memory.
MAX_INPUT_BYTES = 2**31 - 1


def read_bytes(path: str, mutable: bool = False):
    """A file's bytes; `mutable` gives a writable buffer instead (a bytearray or an
    anonymous mmap, indexable and sliceable alike), read in place, for the weights
    reader's NumPy views."""
    if path == STDIO:
        data = _read_limited(sys.stdin.buffer, "<stdin>")
        return bytearray(data) if mutable else data
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
                return _read_in_place(fh, info.st_size) if mutable else fh.read()
            data = _read_limited(fh, path)      # a pipe (`<(...)`, a FIFO): size unknown
            return bytearray(data) if mutable else data
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


def _read_in_place(fh, size: int):
    """The file in a writable buffer. An anonymous mapping, not bytearray(size): its
    pages are zeroed by the kernel as the read first touches them, where a bytearray
    is zero-filled first, a whole extra pass (100 ms on a 100 MB .caffemodel). On Linux
    the pages are mapped at once (MAP_POPULATE) rather than one fault each as the read
    reaches them: a 32 MB file 15 -> 11 ms."""
    import mmap

    if not size:
        return bytearray()
    populate = getattr(mmap, "MAP_POPULATE", 0)
    buffer = (mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
              if populate else mmap.mmap(-1, size))
    got = fh.readinto(buffer)
    if got < size:                  # the file shrank while read
        return bytearray(buffer[:got])
    return buffer


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


def shown_path(path: str) -> str:
    """How messages and reports name a path: '-' is standard input."""
    return "<stdin>" if path == STDIO else path


def read_text(path: str) -> SourceFile:
    return decode_text(read_bytes(path), shown_path(path))


def write_atomic(path: str, data: bytes | str, *, inputs: tuple[str, ...] = (),
                 in_place: bool = False, in_place_option: bool = False) -> None:
    """One output, written as `Outputs` writes several (see there)."""
    outputs = Outputs(inputs, in_place_option=in_place_option)
    outputs.add(path, data, in_place=in_place)
    outputs.commit()


class Outputs:
    """All the outputs of one command: each checked when added, all written at `commit`.

    A file is written to a temporary file beside it (`.NAME.bnlint-PID.XXXX.tmp`), and
    only when every temporary file is complete are they renamed over their targets, so
    on any failure none of the outputs appears and the old files stay as they were.
    Refused: an output that is one of `inputs` (unless `in_place`), a directory, a
    missing folder, a read-only file. A file with several hard links is written in
    place once its temporary copy is complete, so the links stay one file.
    """

    def __init__(self, inputs: tuple[str, ...] = (), *, in_place_option: bool = False) -> None:
        self.inputs = tuple(i for i in inputs if i)
        self.in_place_option = in_place_option
        self._pending: list[tuple[str, bytes]] = []

    def check(self, path: str, *, in_place: bool = False) -> None:
        """Refuse an output path before any work is done (also done by `add`)."""
        if path == STDIO:
            return
        if not in_place:
            for inp in self.inputs:
                if inp != STDIO and _same_file(inp, path):
                    which = "" if inp == path else f" {inp}"
                    raise BnlintError(f"output would overwrite the input{which}; choose "
                                      f"another -o" + (" or pass --in-place"
                                                       if self.in_place_option else ""),
                                      path=path)
        target = Path(path)
        if target.is_dir() or path.endswith(os.sep):
            raise BnlintError("output path is a directory", path=path)
        folder = target.parent if str(target.parent) else Path(".")
        if not folder.is_dir():
            raise BnlintError(f"output folder {str(folder)!r} does not exist", path=path)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None
        if stat.S_ISREG(info.st_mode) and not info.st_mode & 0o222:
            raise BnlintError("is read-only; not replaced (make it writable first, e.g. "
                              "chmod u+w)", path=path)

    def add(self, path: str, data: bytes | str, *, in_place: bool = False) -> None:
        self.check(path, in_place=in_place)
        if any(_same_file(path, other) for other, _ in self._pending if other != STDIO) \
                and path != STDIO:
            raise BnlintError("two outputs of this command name the same file", path=path)
        self._pending.append((path, data.encode("utf-8") if isinstance(data, str) else data))

    def commit(self) -> None:
        files = [(path, data) for path, data in self._pending if path != STDIO]
        staged: list[_Staged] = []
        try:
            for path, data in files:
                staged.append(_stage(path, data))
            with _signals_held():
                for item in staged:
                    item.finish()
        except BaseException:
            for item in staged:
                item.discard()
            raise
        for path, data in self._pending:
            if path == STDIO:
                write_stdout(data)
        self._pending = []


class _Staged:
    """A complete temporary file, or a special file (device, pipe) written at the end."""

    def __init__(self, path: str, data: bytes, tmp: str | None, target: Path,
                 linked: bool) -> None:
        self.path, self.data, self.tmp, self.target, self.linked = path, data, tmp, target, linked

    def finish(self) -> None:
        try:
            if self.tmp is None:
                _write_special(self.path, self.data)
            elif self.linked:
                _write_in_place(self.target, self.data)
                os.unlink(self.tmp)
            else:
                os.replace(self.tmp, self.target)
            self.tmp = None
        except OSError as err:
            raise BnlintError(f"cannot write: {err.strerror or err}", path=self.path) from None

    def discard(self) -> None:
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _stage(path: str, data: bytes) -> _Staged:
    target = Path(path)
    mode, linked = None, False
    try:
        info = os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None
    else:
        if not stat.S_ISREG(info.st_mode):
            # /dev/null, a FIFO, `-o >(gzip > f)`: renaming over it would replace the
            # device or pipe with a plain file, so it is written to as it is
            return _Staged(path, data, None, target, False)
        mode, linked = stat.S_IMODE(info.st_mode), info.st_nlink > 1
    if target.is_symlink():
        # write through the link: the temporary file must sit beside the real file,
        # or the final rename would cross file systems
        target = target.resolve()
    folder = target.parent if str(target.parent) else Path(".")
    remove_stale_temporaries(folder, target.name)
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target.name), suffix=".tmp",
                                   dir=folder)
    except PermissionError:
        raise BnlintError("permission denied (cannot write in its folder)", path=path) from None
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path=path) from None
    staged = _Staged(path, data, tmp, target, linked)
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
    except BaseException as exc:
        staged.discard()
        if isinstance(exc, OSError):
            # disk full, quota, a read-only or vanished folder: the target is untouched
            raise BnlintError(f"cannot write: {exc.strerror or exc}", path=path) from None
        raise
    return staged


def _write_in_place(target: Path, data: bytes) -> None:
    """Overwrite a hard-linked file's contents (its temporary copy proved the space)."""
    with open(target, "r+b") as fh:
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


# Temporary files are `.NAME.bnlint-PID.XXXXXXXX.tmp`: a run killed with SIGKILL
# cannot remove its own, so the next write to NAME removes those whose process is gone.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.bnlint-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")


def _temporary_prefix(name: str) -> str:
    return f".{name}.bnlint-{os.getpid()}."


def remove_stale_temporaries(folder: Path, name: str) -> None:
    """Remove the temporary files of NAME left by bnlint runs that no longer exist."""
    prefix = f".{name}.bnlint-"
    try:
        entries = [e for e in os.listdir(folder) if e.startswith(prefix) and e.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry)
        if match is None or match["name"] != name or _alive(int(match["pid"])):
            continue
        try:
            os.unlink(folder / entry)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class _signals_held:  # noqa: N801  (a context manager used like a function)
    """Ctrl-C and SIGTERM wait until the renames of one commit are all done."""

    _SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n)}

    def __enter__(self):
        self.held = False
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)
            self.held = True
        return self

    def __exit__(self, *exc) -> None:
        if self.held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._SIGNALS)


def write_stdout(data: bytes | str) -> None:
    """All of `data` on stdout, or BnlintError: a write that fails (`> /dev/full`) or
    stops short (an unbuffered or non-blocking stdout) is never taken for success."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        sys.stdout.flush()
        stream = sys.stdout.buffer
        stream.flush()
        fileno = _fileno(stream)
        if fileno is None:
            stream.write(data)
            stream.flush()
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(fileno, view[:1 << 30])
            except BlockingIOError:
                import select

                select.select([], [fileno], [])
                continue
            except InterruptedError:
                continue
            view = view[written:]
    except BrokenPipeError:
        raise
    except OSError as err:
        raise BnlintError(f"cannot write: {err.strerror or err}", path="<stdout>") from None


class _WholeWrites(io.RawIOBase):
    """stdout's file descriptor, written in full: a short write (an unbuffered stdout,
    PYTHONUNBUFFERED=1) is continued and a non-blocking one waits, where Python's own
    text layer would drop the rest."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    #: the error a write met (a full disk, a closed pipe), kept for the CLI: a write
    #: bigger than the text layer's buffer fails here directly, and a later flush
    #: of the then empty buffer would succeed and hide it (`take_stdout_error`)
    failed: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:done + (1 << 30)])
            except BlockingIOError:
                import select

                select.select([], [self._fd], [])
            except InterruptedError:
                continue
            except OSError as err:
                self.failed = err
                raise
        return done

    def close(self) -> None:      # the descriptor stays open: it is the process's stdout
        super().close()


def install_whole_stdout() -> None:
    """Make the process's stdout write everything or raise (see `_WholeWrites`)."""
    old = sys.stdout
    if old is None or old is not sys.__stdout__:
        return                    # redirected in-process (tests): left as it is
    fd = _fileno(old)
    if fd is None:
        return
    try:
        old.flush()
    except OSError:
        return
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_WholeWrites(fd)), encoding=old.encoding,
        # what the stream cannot encode (a Windows code page, PYTHONIOENCODING=ascii)
        # is shown as \xe9 escapes, as on stderr, instead of ending the run with exit 3;
        # nets and weights are written as bytes, never through this text layer
        errors="backslashreplace" if old.errors == "strict" else old.errors,
        line_buffering=old.line_buffering, write_through=getattr(old, "write_through", False))


def take_stdout_error() -> OSError | None:
    """The error the last failed write to stdout met, once; None if none did (or
    stdout is not the one `install_whole_stdout` set up)."""
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    if not isinstance(raw, _WholeWrites):
        return None
    failed, raw.failed = raw.failed, None
    return failed


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


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
