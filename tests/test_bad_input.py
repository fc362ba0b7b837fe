"""Bad files and broken weights: a clear message, exit 2, and nothing lost.

The cases the fuzz cannot reach by mutating text: what the path points at
(a directory, nothing, an unreadable file, a dangling symlink, a device, a pipe),
how outputs are written (temporary file and rename, never over the input, nothing
left behind when the write fails), and weights that are broken in every way the
issue lists, each named by layer and blob. Last, a scan of the source: nothing in
bnlint can run code that comes from its input.
"""

from __future__ import annotations

import ast
import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from test_fuzz import (WEIGHTS_NET, active_rows, assert_clean_exit, invoke,
                       memory_cap, stray_temporaries, weights_arrays)

from bnlint.caffe.schema import default_schema
from bnlint.caffe.weights import caffemodel_bytes, write_caffemodel

EXAMPLES = FIXTURES / "examples"
CLEAN = EXAMPLES / "tiny_resnet_train_val.prototxt"
FIXABLE = FIXTURES / "rules" / "bn001_not_frozen.prototxt"


def rows_of(command: str) -> list[list[str]]:
    return [argv for name, argv in active_rows() if name == command]


def fill(template: list[str], **paths) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in template]


@pytest.fixture
def net(tmp_path) -> Path:
    path = tmp_path / "net.prototxt"
    shutil.copy(CLEAN, path)
    return path


# --- what the path points at --------------------------------------------------------------------

def test_directory_given_as_a_file(tmp_path):
    folder = tmp_path / "model.prototxt"
    folder.mkdir()
    code, _, err = invoke(["convert", str(folder)])
    assert code == 2 and f"{folder}: is a directory" in err
    code, _, err = invoke(["check", "--weights", str(folder), str(CLEAN)])
    assert code == 2 and "is a directory" in err
    # check searches a directory for *.prototxt; an empty one is not an error
    code, out, _ = invoke(["check", str(folder)])
    assert code == 0 and "0 files" in out


@pytest.mark.parametrize("argv", [["check", "{p}"], ["convert", "{p}"],
                                  ["check", "--weights", "{p}", str(CLEAN)]])
def test_missing_file(tmp_path, argv):
    missing = tmp_path / "nope.prototxt"
    code, _, err = invoke(fill(argv, p=missing))
    assert code == 2 and str(missing) in err and "no such file" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
@pytest.mark.parametrize("command", ["check", "convert"])
def test_unreadable_file(net, command):
    net.chmod(0)
    try:
        code, _, err = invoke([command, str(net)])
    finally:
        net.chmod(0o644)
    assert code == 2 and f"{net}: permission denied" in err


@pytest.mark.parametrize("command", ["check", "convert"])
def test_unreadable_file_even_as_root(net, command, monkeypatch):
    """The same message when open() says EACCES (chmod 000 does not stop root)."""
    import builtins

    real_open = builtins.open

    def refuse(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == str(net):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    code, _, err = invoke([command, str(net)])
    monkeypatch.undo()
    assert code == 2 and f"{net}: permission denied" in err


def test_non_utf8_text_check_names_line_and_column(tmp_path):
    f = tmp_path / "latin1.prototxt"
    f.write_bytes(b'name: "a"\nlayer { name: "caf\xe9" }\n')
    code, _, err = invoke(["check", str(f)])
    assert code == 2 and f"{f}:2:19: not UTF-8 text" in err
    code, _, err = invoke(["check", "-"], stdin=f.read_bytes())
    assert code == 2 and "<stdin>:2:19: not UTF-8 text" in err


def test_non_utf8_text_convert_names_line_and_column(tmp_path):
    f = tmp_path / "latin1.prototxt"
    f.write_bytes(b'name: "a"\nlayer { name: "caf\xe9" }\n')
    code, _, err = invoke(["convert", str(f)])
    assert code == 2 and f"{f}:2:19:" in err and "UTF-8" in err


def test_binary_that_is_not_caffe_is_still_called_binary(tmp_path):
    f = tmp_path / "random.caffemodel"
    f.write_bytes(bytes(range(256)) * 4)
    code, _, err = invoke(["convert", str(f)])
    assert code == 2 and "UTF-8" not in err and str(f) in err


@pytest.mark.parametrize("argv", [["check", "{p}"], ["convert", "{p}"],
                                  ["check", "--weights", "{p}", str(CLEAN)]])
def test_symlink_to_a_missing_file(tmp_path, argv):
    link = tmp_path / "link.prototxt"
    link.symlink_to(tmp_path / "gone.prototxt")
    code, _, err = invoke(fill(argv, p=link))
    assert code == 2 and f"{link}: broken symbolic link" in err


def test_symlink_loop(tmp_path):
    loop = tmp_path / "loop.prototxt"
    loop.symlink_to(loop)
    for argv in (["check", str(loop)], ["convert", str(loop)]):
        code, _, err = invoke(argv)
        assert code == 2 and str(loop) in err and "symbolic links" in err


def test_symlink_to_a_file_is_followed(tmp_path):
    link = tmp_path / "link.prototxt"
    link.symlink_to(CLEAN)
    assert invoke(["check", str(link)])[0] == 0


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("command", ["check", "convert"])
def test_a_device_is_refused_before_reading(command):
    """/dev/zero would fill the memory; it is not a file bnlint can read."""
    with memory_cap(1 << 30):            # were it read, fail fast instead of swapping
        code, _, err = invoke([command, "/dev/zero"])
    assert code == 2 and "/dev/zero: is a device" in err


def test_inputs_over_the_size_limit_are_refused(net, monkeypatch):
    import bnlint.files

    monkeypatch.setattr(bnlint.files, "MAX_INPUT_BYTES", 100)
    code, _, err = invoke(["convert", str(net)])
    assert code == 2 and f"{net}: larger than 100 bytes" in err
    code, _, err = invoke(["check", "-"], stdin=net.read_bytes())
    assert code == 2 and "<stdin>: larger than 100 bytes" in err


def test_running_out_of_memory_is_a_message(net, monkeypatch):
    import bnlint.files

    def exhausted(path):
        raise MemoryError("Unable to allocate 7.11 PiB for an array")

    monkeypatch.setattr(bnlint.files, "read_text", exhausted)
    code, _, err = invoke(["check", str(net)])
    assert code == 2 and "out of memory: Unable to allocate 7.11 PiB" in err
    assert "internal error" not in err


def undecodable_name_run(tmp_path, fmt: str):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(EXAMPLES / "tiny_resnet_deploy_by_hand.prototxt",
                folder / os.fsdecode(b"caf\xe9.prototxt"))
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    env.pop("BNLINT_DEBUG", None)
    env.pop("GITHUB_ACTIONS", None)
    # a relative path, as pre-commit passes them (SARIF writes those as relative URIs)
    return subprocess.run([sys.executable, "-m", "bnlint", "check", "--format", fmt,
                           "models"], capture_output=True, env=env, timeout=60, cwd=tmp_path)


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux only")
@pytest.mark.parametrize("fmt", ["text", "concise", "github", "json", "junit"])
def test_file_name_that_is_not_utf8(tmp_path, fmt):
    """A strict UTF-8 stdout (en_US.UTF-8 locales) must not turn an odd name into a crash."""
    done = undecodable_name_run(tmp_path, fmt)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert b"internal error" not in done.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux only")
def test_file_name_that_is_not_utf8_sarif(tmp_path):
    done = undecodable_name_run(tmp_path, "sarif")
    assert done.returncode == 1 and b"internal error" not in done.stderr


# --- stdin and stdout ---------------------------------------------------------------------------

def test_stdin_and_stdout_with_dash(tmp_path):
    text = CLEAN.read_bytes()
    code, out, _ = invoke(["check", "--format", "concise", "-"], stdin=text)
    assert code == 0
    code, out, _ = invoke(["convert", "-"], stdin=text)
    assert code == 0 and 'name: "TinyResNet' in out
    code, out, _ = invoke(["convert", "-", "-o", "-", "--to", "json"], stdin=text)
    assert code == 0 and out.lstrip().startswith("{")
    code, _, err = invoke(["convert", "-", "--to", "binary"], stdin=text)
    assert code == 2 and "-o" in err
    code, _, err = invoke(["check", "-"], stdin=b"")
    assert code in (0, 1)
    code, _, err = invoke(["convert", "-"], stdin=b"layer {")
    assert code == 2 and "<stdin>:1:7:" in err


def test_fix_on_stdin_writes_the_fixed_text_to_stdout():
    data = FIXABLE.read_bytes()
    code, out, err = invoke(["check", "--fix", "--select", "BN001", "-"], stdin=data)
    assert code == 0
    fixed = (FIXTURES / "rules" / "bn001_not_frozen.fixed.prototxt").read_text()
    # the fixed text only (the first line is the fixture's `# expect:` header)
    assert out.splitlines()[1:] == fixed.splitlines()[1:]


# --- outputs: never over the input, nothing half-written -------------------------------------

def test_convert_refuses_to_overwrite_its_input(net, tmp_path):
    before = net.read_bytes()
    other_spelling = tmp_path / "." / "sub" / ".." / "net.prototxt"
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.prototxt"
    link.symlink_to(net)
    for out in (net, other_spelling, link):
        code, _, err = invoke(["convert", str(net), "-o", str(out)])
        assert code == 2 and "would overwrite the input" in err, out
    assert net.read_bytes() == before
    assert stray_temporaries(tmp_path) == []


@pytest.mark.parametrize("command", ["upgrade", "to-deploy"])
def test_writers_refuse_to_overwrite_their_input_unless_in_place(net, tmp_path, command):
    template = next(argv for argv in rows_of(command) if "-o" in argv)
    argv = fill(template, net=net, out=tmp_path, weights="")
    argv[argv.index("-o") + 1] = str(net)
    before = net.read_bytes()
    code, _, err = invoke(argv)
    assert code == 2 and "would overwrite the input" in err
    assert net.read_bytes() == before
    from importlib import import_module

    from bnlint.cli import COMMANDS

    params = {p.name for p in import_module(COMMANDS[command][0]).command.params}
    if "in_place" in params:
        code, out, err = invoke(argv + ["--in-place"])
        assert_clean_exit(argv, code, out, err)
        assert "would overwrite the input" not in err
    assert stray_temporaries(tmp_path) == []


def test_output_folder_missing(net, tmp_path):
    before = net.read_bytes()
    code, _, err = invoke(["convert", str(net), "-o", str(tmp_path / "no" / "out.json")])
    assert code == 2 and "does not exist" in err
    assert net.read_bytes() == before


@pytest.mark.parametrize("failing", ["replace", "fsync", "interrupt"])
@pytest.mark.parametrize("existing_output", [False, True])
def test_a_failed_write_leaves_everything_as_it_was(net, tmp_path, monkeypatch, failing,
                                                    existing_output):
    """Disk full at the rename or the flush, or Ctrl-C: input and old output intact,
    no temporary file left, and a message instead of an internal error."""
    out = tmp_path / "out.caffemodel"
    if existing_output:
        out.write_bytes(b"the previous output")
    before_in = net.read_bytes()
    before_out = out.read_bytes() if existing_output else None

    def fail(*args, **kwargs):
        if failing == "interrupt":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace" if failing != "fsync" else "fsync", fail)
    code, _, err = invoke(["convert", str(net), "-o", str(out)])
    monkeypatch.undo()
    if failing == "interrupt":
        assert code == 130
    else:
        assert code == 2 and f"{out}: cannot write: No space left on device" in err
    assert net.read_bytes() == before_in
    assert (out.read_bytes() if out.exists() else None) == before_out
    assert stray_temporaries(tmp_path) == []


def test_a_failed_fix_leaves_the_input_byte_identical(tmp_path, monkeypatch):
    f = tmp_path / "bad.prototxt"
    shutil.copy(FIXABLE, f)
    before = f.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    code, _, err = invoke(["check", "--fix", "--select", "BN001", str(f)])
    monkeypatch.undo()
    assert code == 2 and "cannot write" in err
    assert f.read_bytes() == before
    assert stray_temporaries(tmp_path) == []


def test_outputs_go_through_a_temporary_file_in_the_same_folder(net, tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst, *args, **kwargs):
        seen.append((Path(src), Path(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    out = tmp_path / "out.json"
    assert invoke(["convert", str(net), "-o", str(out)])[0] == 0
    monkeypatch.undo()
    (src, dst), = seen
    assert dst == out and src.parent == out.parent and src.name.endswith(".tmp")
    assert not src.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_output_to_a_pipe_is_written_into_it_not_replaced(net, tmp_path):
    """`-o /dev/stdout`, `-o >(gzip > f)` or a FIFO: renaming over it would replace the
    pipe (or, as root, /dev/null itself) with a plain file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, _, err = invoke(["convert", str(net), "-o", str(fifo), "--to", "text"])
        received = b""
        while chunk := os.read(reader, 1 << 16):
            received += chunk
    finally:
        os.close(reader)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert b'name: "TinyResNet' in received
    assert stray_temporaries(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_input_from_a_pipe(tmp_path):
    fifo = tmp_path / "fifo.prototxt"
    os.mkfifo(fifo)
    data = CLEAN.read_bytes()

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    code, out, err = invoke(["check", str(fifo)])
    writer.join(timeout=10)
    assert code == 0, err


# --- --fix: only changed files, permissions kept ----------------------------------------------

@pytest.mark.parametrize("mode", [0o640, 0o755, 0o644])
def test_fix_keeps_permissions_and_writes_only_changed_files(tmp_path, mode):
    bad = tmp_path / "bad.prototxt"
    shutil.copy(FIXABLE, bad)
    bad.chmod(mode)
    clean = tmp_path / "clean.prototxt"
    shutil.copy(CLEAN, clean)
    clean_stat = clean.stat()
    code, _, err = invoke(["check", "--fix", "--select", "BN001", str(tmp_path)])
    assert code == 0, err
    assert bad.read_text().count("param { lr_mult: 0 decay_mult: 0 }") == 3
    assert stat.S_IMODE(bad.stat().st_mode) == mode
    after = clean.stat()
    assert (after.st_ino, after.st_mtime_ns) == (clean_stat.st_ino, clean_stat.st_mtime_ns)
    assert stray_temporaries(tmp_path) == []


def test_fix_through_a_symlink_keeps_the_link(tmp_path):
    target = tmp_path / "real.prototxt"
    shutil.copy(FIXABLE, target)
    link = tmp_path / "link.prototxt"
    link.symlink_to(target)
    code, _, _ = invoke(["check", "--fix", "--select", "BN001", str(link)])
    assert code == 0
    assert link.is_symlink()
    assert target.read_text().count("param { lr_mult: 0 decay_mult: 0 }") == 3


def test_fix_on_unparsable_text_writes_nothing(tmp_path):
    f = tmp_path / "broken.prototxt"
    f.write_bytes(b"layer { name: 'x' \n")
    before = f.stat()
    code, _, _ = invoke(["check", "--fix", "--unsafe-fixes", str(f)])
    assert code == 1
    after = f.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# --- broken weights -------------------------------------------------------------------------------

def netparameter(data: bytes):
    net = default_schema().message_class("NetParameter")()
    net.ParseFromString(data)
    return net


def damaged(change) -> bytes:
    net = netparameter(caffemodel_bytes(None, weights_arrays()))
    change({layer.name: layer for layer in net.layer})
    return net.SerializeToString()


def set_values(blob, values):
    blob.ClearField("data")
    blob.data.extend(values)


GOOD = caffemodel_bytes(None, weights_arrays())
# kind -> (bytes of the weights file, what the message must say)
BROKEN_WEIGHTS = {
    "truncated": (GOOD[:len(GOOD) // 2], ["truncated or corrupt"]),
    "truncated_by_one": (GOOD[:-1], ["truncated or corrupt"]),
    "empty": (b"", ["empty file"]),
    "prototxt": (WEIGHTS_NET.encode(), ["prototxt", "without weights"]),
    "not_protobuf": (bytes(range(256)) * 8, ["truncated or corrupt"]),
    "nan": (damaged(lambda layers: set_values(layers["bn"].blobs[1], [1.0, float("nan")])),
            ["layer 'bn', blob 1", "NaN"]),
    "inf": (damaged(lambda layers: set_values(layers["fc"].blobs[1], [0, float("inf"), 0])),
            ["layer 'fc', blob 1", "infinite"]),
    "too_few_values": (damaged(lambda layers: layers["fc"].blobs[0].data.pop()),
                       ["layer 'fc', blob 0", "do not fill"]),
    "too_many_values": (damaged(lambda layers: layers["scale"].blobs[0].data.append(1.0)),
                        ["layer 'scale', blob 0", "do not fill"]),
    "shape_not_data": (damaged(lambda layers: layers["conv"].blobs[0].shape.dim.__setitem__(0, 5)),
                       ["layer 'conv', blob 0", "[5, 3, 1, 1]"]),
    "stripped": (damaged(lambda layers: layers["conv"].blobs[0].ClearField("data")),
                 ["layer 'conv', blob 0", "no values"]),
    # found by the red-team run: NumPy's 64-axis limit escaped as an internal error
    "65_axes": (damaged(lambda layers: layers["conv"].blobs[0].shape.dim.extend([1] * 61)),
                ["layer 'conv', blob 0", "65 axes", "kMaxBlobAxes"]),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_WEIGHTS))
def test_check_with_broken_weights(tmp_path, kind):
    data, words = BROKEN_WEIGHTS[kind]
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(data)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    code, _, err = invoke(["check", "--weights", str(weights), str(net)])
    assert code == 2, err
    assert str(weights) in err
    for word in words:
        assert word in err, (word, err)
    assert weights.read_bytes() == data


WEIGHT_READERS = ["forward", "verify", "fold", "info"]


@pytest.mark.parametrize("command", WEIGHT_READERS)
@pytest.mark.parametrize("kind", sorted(BROKEN_WEIGHTS))
def test_other_commands_with_broken_weights(tmp_path, command, kind):
    data, words = BROKEN_WEIGHTS[kind]
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(data)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    (tmp_path / "out").mkdir()
    for template in rows_of(command):
        if not any("{weights}" in a for a in template):
            continue
        with memory_cap():
            code, out, err = invoke(fill(template, net=net, weights=weights,
                                         out=tmp_path / "out"))
        assert code == 2, err
        for word in words:
            assert word in err, (word, err)
    assert weights.read_bytes() == data


def other_net_weights(path: Path) -> None:
    """Weights of another net that shares a layer name, with another shape."""
    f = np.float32
    write_caffemodel(str(path), None, {"conv": [np.ones((7, 7), f)],
                                       "fc": [np.ones((3, 16), f), np.zeros(3, f)]})


def test_check_with_the_weights_of_another_net(tmp_path):
    """check reports each mismatch as a finding (exit 1), named by layer and blob."""
    weights = tmp_path / "other.caffemodel"
    other_net_weights(weights)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    code, out, err = invoke(["check", "--format", "concise", "--select", "W", "--show-all",
                             "--weights", str(weights), str(net)])
    assert code == 1, err
    assert "W005 [error] Convolution 'conv' blob 0" in out and "InnerProduct 'fc' blob 0" in out


@pytest.mark.parametrize("command", ["forward", "verify", "fold"])
def test_runners_with_the_weights_of_another_net(tmp_path, command):
    """A net cannot run with blobs of the wrong shape: exit 2 naming layer and blob."""
    weights = tmp_path / "other.caffemodel"
    other_net_weights(weights)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    (tmp_path / "out").mkdir()
    for template in rows_of(command):
        code, _, err = invoke(fill(template, net=net, weights=weights, out=tmp_path / "out"))
        assert code == 2 and "layer 'conv'" in err and "blob 0" in err, err


def test_forward_with_a_negative_variance_says_so(tmp_path):
    import warnings

    arrays = weights_arrays()
    arrays["bn"][1] = np.array([-1.0, -1.0], np.float32)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel(str(weights), None, arrays)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = invoke(["forward", "--weights", str(weights), str(net)])
    assert_clean_exit(["forward"], code, out, err)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert "'bn'" in err


# --- nothing executes code from the input -------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal",
                     "shelve", "joblib"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def python_sources() -> list[Path]:
    return sorted((REPO / "src" / "bnlint").rglob("*.py"))


def code_execution_risks(source: str, name: str) -> list[str]:
    """Imports of pickle-like modules, eval/exec/compile calls, np.load without
    allow_pickle=False and yaml.load, as `name:line: what`."""
    problems = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            problems += [f"{where}: import {a.name}" for a in node.names
                         if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                problems.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                problems.append(f"{where}: {func.id}()")
            owner = func.value.id if isinstance(func, ast.Attribute) and \
                isinstance(func.value, ast.Name) else None
            if owner in ("np", "numpy") and func.attr == "load":
                flag = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    problems.append(f"{where}: np.load without allow_pickle=False")
            if owner == "yaml" and func.attr in ("load", "unsafe_load", "full_load"):
                problems.append(f"{where}: yaml.{func.attr}")
    return problems


def test_no_module_can_run_code_from_its_input():
    """No pickle, no eval/exec, and every np.load says allow_pickle=False."""
    sources = [p for p in python_sources() if not p.name.endswith("_pb2.py")]  # protoc's
    assert sources, "the scan found no source"
    problems = []
    for path in sources:
        problems += code_execution_risks(path.read_text(encoding="utf-8"),
                                         str(path.relative_to(REPO)))
    assert problems == []


def test_the_scan_sees_what_it_looks_for():
    risky = ("import pickle\nfrom marshal import loads\nimport numpy as np\n"
             "eval('1')\nexec('x = 1')\nnp.load(f)\nnp.load(f, allow_pickle=True)\n"
             "np.load(f, allow_pickle=False)\nre.compile('x')\n")
    assert [p.split(": ", 1)[1] for p in code_execution_risks(risky, "risky.py")] == [
        "import pickle", "from marshal import ...", "eval()", "exec()",
        "np.load without allow_pickle=False", "np.load without allow_pickle=False"]


def test_forward_refuses_a_pickled_npy(tmp_path):
    """An object array in an .npy is a pickle: loading it must not run its payload."""
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Touch(marker)
    evil = tmp_path / "evil.npy"
    np.save(evil, payload, allow_pickle=True)
    net = tmp_path / "net.prototxt"
    net.write_text(WEIGHTS_NET)
    code, _, err = invoke(["forward", "--input", f"data={evil}", str(net)])
    assert code == 2 and str(evil) in err
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_python_layers_are_never_imported(tmp_path, monkeypatch):
    module = tmp_path / "evil_layer.py"
    marker = tmp_path / "imported"
    module.write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "data" type: "Input" top: "data" '
                   'input_param { shape { dim: 1 dim: 3 } } }\n'
                   'layer { name: "py" type: "Python" bottom: "data" top: "out" '
                   'python_param { module: "evil_layer" layer: "Evil" } }\n')
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    for name, template in active_rows():
        argv = fill(template, net=net, weights=weights, out=out)
        with memory_cap():
            code, stdout, err = invoke(argv, stdin=net.read_bytes() if "-" in argv else b"")
        assert_clean_exit(argv, code, stdout, err)
    assert "evil_layer" not in sys.modules
    assert not marker.exists()
