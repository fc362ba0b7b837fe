"""Regression tests for what a red-team run of bad inputs found (crashes, lost data,
leaked internals), one test per failure; each failed before its fix.

The generic contract (exit 0-2, no traceback, input unchanged, no temporary file
left) is `test_fuzz.run_all_commands`; the tests here add what each case must say.
"""

from __future__ import annotations

import itertools

import pytest

from test_fuzz import active_rows, invoke, registered, run_all_commands

from bnlint.caffe import shapes
from bnlint.caffe.schema import default_schema
from bnlint.errors import ShapeError

INPUT_2x3 = ('layer { name: "d" type: "Input" top: "data" input_param { shape { dim: 2 '
             'dim: 3 dim: 2 dim: 2 } } }\n')


def write(work, text: str, name: str = "net.prototxt"):
    path = work / name
    path.write_text(text)
    return path


# --- crashes --------------------------------------------------------------------------------

def test_verify_of_a_clip_with_min_zero(tmp_path):
    """ReLU6 written as Clip: a required field at its default was dropped before
    serialising the layer (EncodeError)."""
    net = write(tmp_path, INPUT_2x3 + 'layer { name: "c" type: "Clip" bottom: "data" '
                'top: "c" clip_param { min: 0 max: 6 } }\n')
    code, out, err = invoke(["verify", str(net), str(net)])
    assert code == 0, err
    assert "equivalent" in out


def test_a_missing_required_field_is_a_schema_error(tmp_path, work_weights):
    """Clip without `min`: Caffe refuses the file; protobuf refused to serialise it."""
    text = INPUT_2x3 + 'layer { name: "c" type: "Clip" bottom: "data" top: "c" ' \
                       'clip_param { max: 6 } }\n'
    net = write(tmp_path, text)
    code, out, _ = invoke(["check", "--format", "concise", str(net)])
    assert code == 1 and "E003" in out and "'min'" in out
    code, _, err = invoke(["convert", str(net), "-o", str(tmp_path / "n.caffemodel")])
    assert code == 2 and "net.prototxt:2:" in err and "'min'" in err
    run_all_commands(text.encode(), *work_weights)


ON_A_0_AXIS_BLOB = {
    "BatchNorm": "", "ArgMax": "", "Sigmoid": "", "ELU": "", "Swish": "",
    "Clip": "clip_param { min: -1 max: 1 }", "TanH": "", "Power": "", "ReLU": "",
}


def zero_axis_net(layer_type: str) -> str:
    return ('layer { name: "d" type: "Input" top: "data" input_param { shape { } } }\n'
            f'layer {{ name: "x" type: "{layer_type}" bottom: "data" top: "x" '
            f'{ON_A_0_AXIS_BLOB[layer_type]} }}\n')


@pytest.mark.parametrize("layer_type", sorted(ON_A_0_AXIS_BLOB))
def test_layers_on_a_0_axis_blob(work_weights, layer_type):
    """`Input` with `shape {}`: BatchNorm and ArgMax shape inference indexed axis 1 or
    0 (IndexError in check, info, forward, verify), element-wise ops got NumPy
    scalars instead of arrays (TypeError in forward)."""
    run_all_commands(zero_axis_net(layer_type).encode(), *work_weights)


@pytest.mark.parametrize("layer_type", ["Sigmoid", "ELU", "Swish", "Clip"])
def test_element_wise_forward_on_a_0_axis_blob(tmp_path, layer_type):
    import numpy as np

    net = write(tmp_path, zero_axis_net(layer_type))
    code, _, err = invoke(["forward", str(net), "-o", str(tmp_path / "out.npz")])
    assert code == 0, err
    with np.load(tmp_path / "out.npz") as saved:
        assert saved["x"].shape == ()


@pytest.mark.parametrize("layer_type", ["BatchNorm", "ArgMax"])
def test_axis_reading_layers_refuse_a_0_axis_blob(tmp_path, layer_type):
    net = write(tmp_path, zero_axis_net(layer_type))
    code, _, err = invoke(["forward", str(net)])
    assert code == 2 and f"layer 'x' ({layer_type})" in err and "0-axis" in err


def test_every_shape_rule_raises_only_shape_errors():
    """Each shape rule with its default parameters, 0 to 3 bottoms of 0 to 4 axes and
    0 to 2 tops: a ShapeError or a result, never another exception."""
    layer_class = default_schema().message_class("LayerParameter")
    failures = []
    for layer_type, shape, bottoms, tops in itertools.product(
            shapes.known_types(), [(), (1,), (0,), (2, 3), (1, 2, 3), (1, 2, 3, 4),
                                   (0, 0, 0, 0)], range(4), range(3)):
        layer = layer_class(name="l", type=layer_type)
        layer.top.extend(f"t{i}" for i in range(tops))
        try:
            shapes.infer(layer, [shape] * bottoms)
        except ShapeError:
            pass
        except Exception as err:  # noqa: BLE001  (what the test is looking for)
            failures.append((layer_type, shape, bottoms, tops, repr(err)))
    assert failures == []


@pytest.mark.parametrize("dims, words", [
    ("dim: 1 dim: -2 dim: 3 dim: 3", ["layer 'd', blob 'data'", "negative"]),
    ("dim: 1 dim: 0 dim: 3 dim: 3", ["layer 'c' (Convolution), blob 0", "empty blob"]),
])
def test_verify_refuses_what_forward_refuses(tmp_path, dims, words):
    net = write(tmp_path, f'layer {{ name: "d" type: "Input" top: "data" input_param {{ '
                          f'shape {{ {dims} }} }} }}\nlayer {{ name: "c" type: "Convolution" '
                          f'bottom: "data" top: "c" convolution_param {{ num_output: 2 '
                          f'kernel_size: 1 }} }}\n')
    for argv in (["forward", str(net)], ["verify", str(net), str(net)]):
        code, _, err = invoke(argv)
        assert code == 2, err
        for word in words:
            assert word in err, (argv, err)


def test_a_caffemodel_layer_name_that_is_not_utf8(tmp_path):
    """One bit flip in a layer name: protobuf hands over bytes, which crashed the
    unused-weights note of `forward`."""
    import numpy as np

    from bnlint.caffe.weights import caffemodel_bytes

    net = write(tmp_path, INPUT_2x3 + 'layer { name: "conv" type: "Convolution" '
                'bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 '
                'bias_term: false } }\n')
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(caffemodel_bytes(None, {"conv": [np.ones((2, 3, 1, 1), np.float32)]})
                        .replace(b"conv", b"co\xffv"))
    for command in ("forward", "info", "check", "verify", "fold"):
        argv = [command, str(net), "--weights", str(weights)]
        if command == "verify":
            argv.insert(2, str(net))
        if command == "fold":
            argv += ["-o", str(tmp_path / "folded.prototxt")]
        code, out, err = invoke(argv)
        assert code in (0, 1), (argv, err)
        if command == "forward":
            assert "co\\xffv" in err, err


@pytest.fixture(scope="module")
def work_weights(tmp_path_factory):
    """(folder, weights file) for `run_all_commands`."""
    from test_fuzz import good_caffemodel

    work = tmp_path_factory.mktemp("red_team")
    weights = work / "weights.caffemodel"
    weights.write_bytes(good_caffemodel())
    return work, weights


def test_the_command_table_covers_every_command():
    """The generic runs above go through every registered command."""
    assert {name for name, _ in active_rows()} == registered() - {"rules"}


# --- data safety --------------------------------------------------------------------------------

BN_NET = (INPUT_2x3 + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" '
          'convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }\n'
          'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n')


@pytest.fixture
def bn_net(tmp_path):
    """(net, weights) that `fold` folds."""
    import numpy as np

    from bnlint.caffe.weights import caffemodel_bytes

    f = np.float32
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(caffemodel_bytes(None, {
        "conv": [np.ones((2, 3, 1, 1), f)],
        "bn": [np.zeros(2, f), np.ones(2, f), np.ones(1, f)]}))
    return write(tmp_path, BN_NET), weights


def test_no_output_may_overwrite_any_input(tmp_path, bn_net):
    """to-deploy --weights W -o W replaced trained weights with prototxt text;
    forward's --inputs and --input files were overwritten by -o."""
    import numpy as np

    net, weights = bn_net
    npy, npz = tmp_path / "x.npy", tmp_path / "x.npz"
    np.save(npy, np.zeros((2, 3, 2, 2), np.float32))
    np.savez(npz, data=np.zeros((2, 3, 2, 2), np.float32))
    cases = [(["to-deploy", str(net), "--weights", str(weights), "-o", str(weights)], weights),
             (["forward", str(net), "--inputs", str(npz), "-o", str(npz)], npz),
             (["forward", str(net), "--input", f"data={npy}", "-o", str(npy)], npy),
             (["fold", str(net), "--weights", str(weights), "-o", str(tmp_path / "f.prototxt"),
               "--weights-out", str(weights)], weights)]
    for argv, victim in cases:
        before = victim.read_bytes()
        code, _, err = invoke(argv)
        assert code == 2 and "would overwrite the input" in err, (argv, err)
        assert victim.read_bytes() == before, argv
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def fails_on_call(monkeypatch, name: str, call: int, exc: BaseException):
    """Make os.NAME raise `exc` on its `call`-th call (1-based)."""
    import os

    real = getattr(os, name)
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fake)


@pytest.mark.parametrize("failure", ["disk-full", "interrupt", "terminate"])
@pytest.mark.parametrize("call", [1, 2])
def test_fold_writes_both_outputs_or_neither(tmp_path, bn_net, monkeypatch, failure, call):
    """fold wrote the .caffemodel before the .prototxt: a failure in between left new
    weights beside the old net."""
    import errno

    net, weights = bn_net
    out = tmp_path / "out"
    out.mkdir()
    old_net, old_weights = out / "f.prototxt", out / "f.caffemodel"
    old_net.write_text("old net")
    old_weights.write_bytes(b"old weights")
    exc = {"disk-full": OSError(errno.ENOSPC, "No space left on device"),
           "interrupt": KeyboardInterrupt(), "terminate": SystemExit(143)}[failure]
    fails_on_call(monkeypatch, "fsync", call, exc)
    code, _, err = invoke(["fold", str(net), "--weights", str(weights), "-o", str(old_net)])
    monkeypatch.undo()
    assert code == {"disk-full": 2, "interrupt": 130, "terminate": 143}[failure], err
    assert old_net.read_text() == "old net" and old_weights.read_bytes() == b"old weights"
    assert sorted(p.name for p in out.iterdir()) == ["f.caffemodel", "f.prototxt"]


@pytest.mark.parametrize("output", ["{dir}", "{dir}/"])
def test_fold_to_a_directory_writes_nothing(tmp_path, bn_net, output):
    net, weights = bn_net
    folder = tmp_path / "dir"
    folder.mkdir()
    code, _, err = invoke(["fold", str(net), "--weights", str(weights),
                           "-o", output.format(dir=folder)])
    assert code == 2 and "directory" in err, err
    assert list(folder.iterdir()) == []
    assert not (tmp_path / "dir.caffemodel").exists()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    """SIGKILL mid-write leaves `.NAME.bnlint-PID.XXXX.tmp`; the next write to NAME
    removes those whose process is gone, and only those."""
    import os

    net = write(tmp_path, INPUT_2x3)
    dead = tmp_path / ".out.json.bnlint-999999999.abcd1234.tmp"     # beyond pid_max
    alive = tmp_path / f".out.json.bnlint-{os.getppid()}.abcd1234.tmp"
    other = tmp_path / ".other.json.bnlint-999999999.abcd1234.tmp"
    for path in (dead, alive, other):
        path.write_text("partial")
    code, _, err = invoke(["convert", str(net), "-o", str(tmp_path / "out.json")])
    assert code == 0, err
    assert not dead.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize("argv", [["check", "--fix", "--select", "BN001", "{f}"],
                                  ["upgrade", "--in-place", "{f}"]])
def test_a_read_only_file_is_not_replaced(tmp_path, argv):
    import os
    import shutil
    import stat

    from conftest import FIXTURES

    f = tmp_path / "ro.prototxt"
    shutil.copy(FIXTURES / "rules" / ("bn001_not_frozen.prototxt" if "check" in argv
                                      else "n006_legacy.prototxt"), f)
    f.chmod(0o444)
    before = f.read_bytes(), os.stat(f).st_ino
    code, _, err = invoke([a.format(f=f) for a in argv])
    assert code == 2 and f"{f}: is read-only" in err, err
    assert (f.read_bytes(), os.stat(f).st_ino) == before
    assert stat.S_IMODE(f.stat().st_mode) == 0o444


def test_fix_keeps_hard_links(tmp_path):
    """A file with two names stays one file: written in place once its temporary copy
    is complete."""
    import os
    import shutil

    from conftest import FIXTURES

    f = tmp_path / "a.prototxt"
    shutil.copy(FIXTURES / "rules" / "bn001_not_frozen.prototxt", f)
    link = tmp_path / "b.prototxt"
    os.link(f, link)
    code, _, err = invoke(["check", "--fix", "--select", "BN001", str(f)])
    assert code == 0, err
    assert os.path.samefile(f, link) and os.stat(f).st_nlink == 2
    assert link.read_text().count("param { lr_mult: 0 decay_mult: 0 }") == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --- the process: stdout, signals ---------------------------------------------------------------

def bnlint_process(args, **kwargs):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "bnlint", *args], env=env, **kwargs)


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [["check", "{net}"], ["convert", "{net}", "--to", "json"],
                                  ["info", "{net}"], ["rules"], ["upgrade", "{net}"],
                                  ["to-deploy", "{net}"], ["forward", "{net}"]])
def test_a_full_stdout_is_exit_2_cannot_write(tmp_path, args):
    import subprocess

    net = write(tmp_path, BN_NET)
    with open("/dev/full", "wb") as full:
        proc = bnlint_process([a.format(net=net) for a in args], stdout=full,
                              stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert b"<stdout>: cannot write: No space left on device" in err
    assert b"Traceback" not in err


@pytest.mark.parametrize("args", [["check", "{net}"], ["info", "{net}"], ["rules"]])
def test_a_closed_pipe_is_a_quiet_exit_1(tmp_path, args):
    """`bnlint ... | head` where the reader is gone before a short output is flushed at
    the command's exit (the plain report writes it in one piece, unflushed)."""
    import os
    import subprocess

    net = write(tmp_path, BN_NET)
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = bnlint_process([a.format(net=net) for a in args], stdout=write_end,
                          stderr=subprocess.PIPE)
    os.close(write_end)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (1, b"")


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full")
def test_a_report_bigger_than_the_buffer_on_a_full_disk_is_exit_2(tmp_path):
    """One write of the whole report (more than the text layer's 8 KB buffer) fails in
    the write itself, leaving nothing buffered for the flush to fail on."""
    import subprocess

    net = write(tmp_path, "".join(
        f'layer {{ name: "bn{i}" type: "BatchNorm" bottom: "x" top: "x" }}\n'
        for i in range(200)))
    with open("/dev/full", "wb") as full:
        proc = bnlint_process(["check", "--show-all", str(net)], stdout=full,
                              stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert b"<stdout>: cannot write: No space left on device" in err


def test_forward_into_a_closed_pipe_is_a_quiet_exit_1(tmp_path):
    """forward returns (no sys.exit) with its table still buffered: the flush at the
    end meets the closed pipe."""
    import os
    import subprocess

    net = write(tmp_path, BN_NET)
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = bnlint_process(["forward", str(net), "--blobs", "all"], stdout=write_end,
                          stderr=subprocess.PIPE)
    os.close(write_end)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert b"Traceback" not in err and b"Exception ignored" not in err


def test_an_output_that_cannot_encode_a_name_gets_escapes_not_exit_3(tmp_path):
    """PYTHONIOENCODING=ascii (or a Windows code page) and a layer named 'b\u00e9':
    the report ended in exit 3 'internal error'."""
    import subprocess

    net = write(tmp_path, 'layer { name: "b\u00e9" type: "BatchNorm" bottom: "x" top: "x" }\n')
    proc = bnlint_process(["check", str(net)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env={"PYTHONIOENCODING": "ascii"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert b"BN010" in out and b"'b\\xe9'" in out
    assert b"internal error" not in err


def test_a_short_write_to_stdout_is_continued(tmp_path):
    """PYTHONUNBUFFERED=1 and a non-blocking pipe: Python's text layer dropped what a
    short write left over, and the command exited 0 with a truncated output."""
    import fcntl
    import os
    import subprocess
    import time

    net = write(tmp_path, "".join(
        f'layer {{ name: "relu{i}" type: "ReLU" bottom: "data" top: "data" }}\n'
        for i in range(3000)))
    expected = invoke(["convert", str(net), "--to", "json"])[1].encode()
    assert len(expected) > 200_000
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    proc = bnlint_process(["convert", str(net), "--to", "json"], stdout=write_end,
                          stderr=subprocess.PIPE, env={"PYTHONUNBUFFERED": "1"})
    os.close(write_end)
    time.sleep(1.0)       # let the writer fill the pipe and meet EAGAIN
    received = b""
    while chunk := os.read(read_end, 1 << 16):
        received += chunk
    os.close(read_end)
    proc.wait(timeout=120)
    assert (proc.returncode, received == expected) == (0, True), proc.stderr.read()


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.3, 1.0])
def test_a_signal_at_any_time_is_a_quiet_exit(tmp_path, signame, code, delay):
    """Ctrl-C in the first 0.3 s (imports, before the main guard) printed a traceback;
    SIGTERM killed the process without its cleanup. The run waits on a pipe nobody
    writes, so the signal always finds it running."""
    import os
    import signal
    import subprocess
    import time

    fifo = tmp_path / "never.prototxt"
    os.mkfifo(fifo)
    proc = bnlint_process(["check", str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(getattr(signal, signame))
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:       # never left blocked on the pipe
            proc.kill()
    # Before the interpreter runs any of bnlint (its own start-up takes about 20 ms
    # idle, far more on a loaded machine), the signal is Python's to handle: its
    # default action ends the process, or a KeyboardInterrupt in Python's own start-up
    # (site, runpy) prints a traceback with no frame of bnlint's.
    if b"Traceback" in err and b"bnlint" not in err and signame == "SIGINT":
        assert proc.returncode == 1 and err.rstrip().endswith(b"KeyboardInterrupt"), err
        return
    assert proc.returncode in (code, -getattr(signal, signame)), err
    assert b"Traceback" not in err and b"internal error" not in err


# --- configuration files ------------------------------------------------------------------------

DEEP_TOML = "select = " + "[" * 2000 + "]" * 2000 + "\n"


@pytest.mark.parametrize("found", ["--config", "upward"])
def test_a_config_nested_2000_deep(tmp_path, found):
    folder = tmp_path / "sub"
    folder.mkdir()
    net = write(folder, BN_NET)
    config = tmp_path / ".bnlint.toml"
    config.write_text(DEEP_TOML)
    argv = ["check", str(net)] if found == "upward" else ["check", "--config", str(config),
                                                          str(net)]
    code, _, err = invoke(argv)
    assert code == 2 and f"{config}: cannot read configuration: nested too deeply" in err, err


@pytest.mark.skipif(not __import__("os").path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_config_that_is_a_device(tmp_path):
    net = write(tmp_path, BN_NET)
    code, _, err = invoke(["check", "--config", "/dev/zero", str(net)])
    assert code == 2 and "/dev/zero: is a device" in err


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes")
def test_a_config_that_is_a_pipe_does_not_block(tmp_path):
    import os

    net = write(tmp_path, BN_NET)
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    code, _, err = invoke(["check", "--config", str(fifo), str(net)])
    assert code == 2 and f"{fifo}: is a pipe" in err


def test_a_huge_config_is_refused_before_reading(tmp_path):
    net = write(tmp_path, BN_NET)
    config = tmp_path / "big.toml"
    with open(config, "wb") as fh:
        fh.truncate(3 << 30)          # sparse: 3 GiB of NULs, no disk used
    code, _, err = invoke(["check", "--config", str(config), str(net)])
    assert code == 2 and f"{config}: larger than" in err


# --- messages -----------------------------------------------------------------------------------

def test_to_deploy_refuses_a_net_with_schema_errors(tmp_path):
    """to-deploy wrote a deploy net Caffe refuses, and exited 0."""
    net = write(tmp_path, INPUT_2x3 + (
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
        'num_output: -4 kernel_size: 1 bias_term: true bias_term: false bogus: 3 } }\n'
        'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" '
        'batch_norm_param { use_global_stats: maybe } }\n'))
    out = tmp_path / "deploy.prototxt"
    code, stdout, err = invoke(["to-deploy", str(net), "-o", str(out)])
    assert code == 2 and not out.exists()
    for line_col, word in (("2:", "num_output"), ("2:", "bias_term"), ("2:", "bogus"),
                           ("3:", "use_global_stats")):
        assert f"net.prototxt:{line_col}" in err and word in err, (word, err)
    code, stdout, err = invoke(["to-deploy", str(net)])
    assert code == 2 and stdout == ""


# --- NumPy's RuntimeWarnings: an error naming the layer, or a note naming it -------------------

DENSE = (INPUT_2x3 + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" '
         'convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }\n'
         'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" {bn} }\n'
         'layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" '
         'inner_product_param { num_output: 3 } }\n')


def run_catching_warnings(argv):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = invoke(argv)
    leaked = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert leaked == [], leaked
    assert "RuntimeWarning" not in err and ".py:" not in err, err
    return code, out, err


def dense_weights(tmp_path, value: float, variance: float = 1.0):
    import numpy as np

    from bnlint.caffe.weights import caffemodel_bytes

    f = np.float32
    path = tmp_path / f"w{value}{variance}.caffemodel"
    path.write_bytes(caffemodel_bytes(None, {
        "conv": [np.full((2, 3, 1, 1), value, f)], "fc": [np.full((3, 8), value, f),
                                                          np.zeros(3, f)],
        "bn": [np.zeros(2, f), np.full(2, variance, f), np.ones(1, f)]}))
    return path


def test_a_negative_eps_with_stored_statistics_is_an_error(tmp_path):
    net = write(tmp_path, DENSE.replace("{bn}", "batch_norm_param { eps: -2 }"))
    weights = dense_weights(tmp_path, 1.0)
    for argv in (["forward", str(net), "--weights", str(weights)],
                 ["verify", str(net), str(net), "--weights", str(weights)]):
        code, _, err = run_catching_warnings(argv)
        assert code == 2 and "layer 'bn' (BatchNorm)" in err and "negative" in err, err


def test_a_negative_eps_with_batch_statistics_is_a_note(tmp_path):
    net = write(tmp_path, DENSE.replace(
        "{bn}", "batch_norm_param { use_global_stats: false eps: -1 }"))
    code, _, err = run_catching_warnings(["forward", str(net)])
    assert code == 0 and "note: layer 'bn' (BatchNorm)" in err, err


def test_overflow_in_dense_and_conv_maths_is_a_note(tmp_path):
    net = write(tmp_path, DENSE.replace("{bn}", ""))
    weights = dense_weights(tmp_path, 3e38)
    code, _, err = run_catching_warnings(["forward", str(net), "--weights", str(weights)])
    assert code == 0, err
    assert "note: layer 'conv' (Convolution): overflow" in err
    assert "note: layer 'fc' (InnerProduct): overflow" in err
    for argv in (["verify", str(net), str(net), "--weights", str(weights)],
                 ["fold", str(net), "--weights", str(weights), "-o",
                  str(tmp_path / "f.prototxt")],
                 ["fold", str(net), "--weights", str(weights), "--no-verify", "-o",
                  str(tmp_path / "g.prototxt")]):
        code, _, err = run_catching_warnings(argv)
        assert code in (0, 1, 2), err


# --- time: what made commands superlinear (the numbers are in benchmarks/resources.py) ---------

def test_info_shortens_a_huge_name_in_its_table(tmp_path):
    """`info` wrapped a 10 MB layer name in its table cell in quadratic time (40 s)."""
    net = write(tmp_path, INPUT_2x3 + 'layer { name: "' + "n" * 1_000_000 +
                '" type: "ReLU" bottom: "data" top: "r" }\n')
    code, out, err = invoke(["info", str(net)])
    assert code == 0, err
    assert "(1,000,000" in out and "characters)" in out and len(out) < 20_000


# --- no Python internals in messages -----------------------------------------------------------

def test_an_integer_of_5000_digits(tmp_path):
    net = write(tmp_path, 'layer { name: "d" type: "Input" top: "data" input_param { shape { '
                          'dim: ' + "9" * 5000 + ' } } }\n')
    code, out, err = invoke(["check", "--format", "concise", str(net)])
    assert code == 1 and "E003" in out and "5000-digit" in out
    code, _, err = invoke(["convert", str(net)])
    assert code == 2 and "5000-digit" in err
    assert "set_int_max_str_digits" not in out + err


@pytest.mark.skipif(not __import__("os").path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_proto_that_is_a_device(tmp_path):
    net = write(tmp_path, INPUT_2x3)
    code, _, err = invoke(["check", "--proto", "/dev/zero", str(net)])
    assert code == 2 and "/dev/zero: is a device or pipe, not a .proto file" in err


def test_an_array_numpy_cannot_size_names_the_layer(tmp_path):
    """pad 1e9 with stride 1e9: a 3x3 output Caffe computes, but the padded input is
    beyond NumPy's size limit ('array is too big; arr.size * arr.dtype.itemsize')."""
    net = write(tmp_path, 'layer { name: "data" type: "Input" top: "data" input_param { '
                          'shape { dim: 1 dim: 1 dim: 2 dim: 2 } } }\nlayer { name: "c" '
                          'type: "Convolution" bottom: "data" top: "c" convolution_param { '
                          'num_output: 1 kernel_size: 1 pad: 1000000000 stride: 1000000000 } '
                          '}\n')
    code, _, err = invoke(["forward", str(net)])
    assert code == 2 and "layer 'c' (Convolution): out of memory" in err
    assert "arr.size" not in err


def test_out_of_memory_in_a_layer_names_it(tmp_path, monkeypatch):
    from bnlint.forward.ops import activations

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.45 GiB for an array with shape (2000000, 1000)")

    monkeypatch.setattr(activations, "_sigmoid_as_caffe", no_memory)
    net = write(tmp_path, INPUT_2x3 + 'layer { name: "s" type: "Sigmoid" bottom: "data" '
                'top: "s" }\n')
    code, _, err = invoke(["forward", str(net)])
    assert code == 2 and "layer 's' (Sigmoid): out of memory" in err and "7.45 GiB" in err


@pytest.mark.parametrize("special", [None, float("nan"), float("inf")])
def test_json_of_a_caffemodel_holds_the_same_values_as_json_format(tmp_path, special):
    """convert --to json of densenet121's weights took 60-195 s (json_format converts
    each float in Python); big float arrays are now formatted by NumPy. The document
    must be the same: same keys in the same order, the same float32 values."""
    import json

    import numpy as np
    from google.protobuf import json_format

    from bnlint.caffe.schema import default_schema
    from bnlint.caffe.weights import caffemodel_bytes

    rng = np.random.default_rng(0)
    conv = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    if special is not None:
        conv[0, 0, 0, 0] = special
    data = caffemodel_bytes(None, {"conv": [conv, np.arange(8, dtype=np.float32)],
                                   "bn": [np.full(100, 1e-45, np.float32),
                                          np.full(100, 3.4e38, np.float32),
                                          np.ones(1, np.float32)]})
    model = tmp_path / "w.caffemodel"
    model.write_bytes(data)
    code, out, err = invoke(["convert", str(model), "--to", "json"])
    assert code == 0, err
    net = default_schema().message_class("NetParameter")()
    net.ParseFromString(data)
    expected = json.loads(json_format.MessageToJson(net, preserving_proto_field_name=True))
    got = json.loads(out)

    def same(a, b):
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return np.array_equal(np.float32(a), np.float32(b), equal_nan=True)
        return a == b

    assert same(expected, got)
    back = default_schema().message_class("NetParameter")()
    json_format.Parse(out, back)
    assert back.SerializeToString() == net.SerializeToString()
