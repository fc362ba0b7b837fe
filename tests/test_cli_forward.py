"""`bnlint forward` and `bnlint info` end to end, in a subprocess as a user runs them.

A subprocess (not the in-process runner) because these commands import NumPy and the
ops lazily: this also checks that the command modules import on their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, REPO, needs_shared

TINY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" }
                      bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

TRAIN = """name: "train"
layer { name: "data" type: "Data" top: "data" top: "label"
  data_param { source: "lmdb" batch_size: 2 backend: LMDB } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
"""


def bnlint(*args: str, cwd=None) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    env.pop("COLUMNS", None)
    proc = subprocess.run([sys.executable, "-m", "bnlint", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(TINY)
    return path


def load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_forward_prints_outputs_and_saves_them(tiny, tmp_path):
    out = tmp_path / "out.npz"
    code, stdout, stderr = bnlint("forward", str(tiny), "-o", str(out))
    assert code == 0, stderr
    assert "prob" in stdout and "1x5" in stdout
    assert "fillers (seed 0)" in stderr
    saved = load(out)
    assert list(saved) == ["prob"]
    assert saved["prob"].dtype == np.float32
    np.testing.assert_allclose(saved["prob"].sum(), 1.0, rtol=1e-6)


def test_forward_is_reproducible_with_a_seed(tiny, tmp_path):
    runs = []
    for seed, name in (("3", "a"), ("3", "b"), ("4", "c")):
        path = tmp_path / f"{name}.npz"
        assert bnlint("forward", str(tiny), "--seed", seed, "-o", str(path))[0] == 0
        runs.append(load(path)["prob"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_forward_blobs_all_and_by_name(tiny, tmp_path):
    everything = tmp_path / "all.npz"
    assert bnlint("forward", str(tiny), "--blobs", "all", "-o", str(everything))[0] == 0
    assert list(load(everything)) == ["data", "conv", "fc", "prob"]
    some = tmp_path / "some.npz"
    assert bnlint("forward", str(tiny), "--blobs", "conv,fc", "-o", str(some))[0] == 0
    assert set(load(some)) == {"conv", "fc"}
    assert (load(some)["conv"] >= 0).all()           # the value after the in-place ReLU


def test_forward_with_given_inputs(tiny, tmp_path):
    x = np.ones((1, 2, 4, 4), np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", data=x)
    first, second = tmp_path / "1.npz", tmp_path / "2.npz"
    assert bnlint("forward", str(tiny), "--input", f"data={tmp_path / 'x.npy'}",
                  "--blobs", "data", "-o", str(first))[0] == 0
    assert bnlint("forward", str(tiny), "--inputs", str(tmp_path / "x.npz"),
                  "--blobs", "data", "-o", str(second))[0] == 0
    np.testing.assert_array_equal(load(first)["data"], x)
    np.testing.assert_array_equal(load(second)["data"], x)


def test_forward_input_shape_override(tiny, tmp_path):
    out = tmp_path / "out.npz"
    code, stdout, stderr = bnlint("forward", str(tiny), "--input-shape", "data=3,2,4,4",
                                  "--blobs", "fc", "-o", str(out))
    assert code == 0, stderr
    assert load(out)["fc"].shape == (3, 5)


@pytest.mark.parametrize("args, message", [
    (("--input-shape", "nope=1,2"), "no input named 'nope'"),
    (("--input-shape", "data=1,x"), "--input-shape 'data=1,x': dimensions must be"),
    (("--blobs", "missing"), "no blob named 'missing'"),
    (("--weights", "no/such.caffemodel"), "no/such.caffemodel: no such file"),
])
def test_forward_bad_usage_exits_2(tiny, args, message):
    code, stdout, stderr = bnlint("forward", str(tiny), *args)
    assert code == 2
    assert message in stderr


def test_forward_prototxt_as_weights_exits_2(tiny):
    code, _, stderr = bnlint("forward", str(tiny), "--weights", str(tiny))
    assert code == 2
    assert f"{tiny}: a text net definition (prototxt) without weights" in stderr


def test_forward_data_layer_needs_input_shape(tmp_path):
    net = tmp_path / "train.prototxt"
    net.write_text(TRAIN)
    code, _, stderr = bnlint("forward", str(net), "--phase", "train")
    assert code == 2
    assert f"{net}:2:1:" in stderr and "--input-shape data=" in stderr
    code, stdout, stderr = bnlint("forward", str(net), "--phase", "train",
                                  "--input-shape", "data=2,3,4,4")
    assert code == 0, stderr
    assert "fc" in stdout and "2x2" in stdout


def test_forward_unsupported_layer_exits_2(tmp_path):
    net = tmp_path / "fork.prototxt"
    net.write_text(TINY + 'layer { name: "odd" type: "Mystery" bottom: "prob" top: "odd" }\n')
    code, _, stderr = bnlint("forward", str(net))
    assert code == 2
    assert f"{net}:11:1: layer 'odd': type 'Mystery' is not supported" in stderr


def test_info_table_and_totals(tiny):
    code, stdout, stderr = bnlint("info", str(tiny))
    assert code == 0, stderr
    for text in ("Convolution", "BatchNorm", "1x3x2x2", "1x5", "total", "6 layers"):
        assert text in stdout
    # conv 3*2*3*3 + 3, bn 3+3+1, fc 5*12 + 5: 57 + 7 + 65; MACs conv 12*18, fc 5*12.
    assert "parameters: 129 " in stdout
    assert "multiply-accumulates: 276" in stdout


def test_info_counts_macs_at_batch_one(tmp_path):
    net = tmp_path / "batch10.prototxt"
    net.write_text(TINY.replace("dim: 1 dim: 2", "dim: 10 dim: 2"))
    code, stdout, stderr = bnlint("info", str(net))
    assert code == 0, stderr
    assert "10x3x2x2" in stdout                       # the shapes stay the file's own
    assert "multiply-accumulates: 276 (batch 1" in stdout
    code, stdout, stderr = bnlint("info", str(net), "--input-shape", "data=10,2,4,4")
    assert "multiply-accumulates: 2,760" in stdout


def test_info_without_input_shape_shows_unknowns(tmp_path):
    net = tmp_path / "train.prototxt"
    net.write_text(TRAIN)
    code, stdout, stderr = bnlint("info", str(net), "--phase", "train")
    assert code == 0
    assert "?" in stdout and "--input-shape data=" in stderr
    code, stdout, _ = bnlint("info", str(net), "--phase", "train", "--input-shape",
                             "data=2,3,4,4")
    assert "2x2" in stdout and "multiply-accumulates: 192" in stdout


@needs_shared
def test_forward_golden_net_matches_caffe(tmp_path):
    folder = GOLDEN / "bn_variants"
    out = tmp_path / "out.npz"
    code, stdout, stderr = bnlint("forward", str(folder / "net.prototxt"),
                                  "--weights", str(folder / "weights.caffemodel"),
                                  "--inputs", str(folder / "inputs.npz"),
                                  "--blobs", "all", "-o", str(out))
    assert code == 0, stderr
    assert stderr == ""                              # every layer's weights were found
    got = load(out)
    references = load(folder / "blobs.npz")
    assert set(references) <= set(got)
    for name, ref in references.items():
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got[name] - ref).max() <= 1e-4 * scale, name


@needs_shared
def test_info_golden_mobilenet():
    folder = GOLDEN / "mobilenet_v1"
    code, stdout, stderr = bnlint("info", str(folder / "net.prototxt"),
                                  "--weights", str(folder / "weights.caffemodel"))
    assert code == 0, stderr
    assert "parameters: 4,253,891 " in stdout
    assert "multiply-accumulates: 568,740,352" in stdout
    assert "stored" in stdout and "fillers" not in stdout


def test_info_json_has_the_table_and_totals(tiny):
    import json

    code, stdout, stderr = bnlint("info", "--format", "json", str(tiny))
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["version"] == 1 and document["state"] == "TEST"
    assert document["macs_batch"] == 1
    assert [layer["name"] for layer in document["layers"]] == [
        "data", "conv", "bn", "relu", "fc", "prob"]
    by_name = {layer["name"]: layer for layer in document["layers"]}
    assert by_name["conv"]["top_shapes"] == [[1, 3, 2, 2]]
    assert by_name["conv"]["param_shapes"] == [[3, 2, 3, 3], [3]]
    assert by_name["conv"]["params"] == 57 and by_name["conv"]["macs"] == 216
    assert document["totals"] == {"layers": 6, "params": 129, "macs": 276, "partial": False,
                                  "partial_layers": []}


def test_info_json_says_which_totals_are_partial(tmp_path):
    import json

    net = tmp_path / "fork.prototxt"
    net.write_text(TINY.replace('layer { name: "prob"',
                                'layer { name: "odd" type: "Mystery" bottom: "fc" top: "fc2" }\n'
                                'layer { name: "fc2" type: "InnerProduct" bottom: "fc2" '
                                'top: "fc3" inner_product_param { num_output: 2 } }\n'
                                'layer { name: "prob"'))
    code, stdout, stderr = bnlint("info", "--format", "json", str(net))
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["totals"]["partial"] is True
    assert document["totals"]["partial_layers"] == ["odd", "fc2"]
    assert document["totals"]["params"] == 129
    assert any("Mystery" in note for note in document["notes"])
    code, stdout, _ = bnlint("info", str(net))
    assert "parameters: 129+" in stdout


def test_info_table_never_cuts_a_name(tmp_path):
    """Narrow terminal or not, each layer and blob name appears whole on one line."""
    long_name = "stage4_unit3_conv2_depthwise_batchnorm_scale_relu"
    net = tmp_path / "long.prototxt"
    net.write_text(TINY.replace('name: "bn" type: "BatchNorm" bottom: "conv" top: "conv"',
                                f'name: "{long_name}" type: "BatchNorm" bottom: "conv" '
                                f'top: "{long_name}_out"')
                       .replace('name: "relu" type: "ReLU" bottom: "conv"',
                                f'name: "relu" type: "ReLU" bottom: "{long_name}_out"'))
    for columns in ("40", "80", "200"):
        env_code = subprocess.run(
            [sys.executable, "-m", "bnlint", "info", str(net)], capture_output=True, text=True,
            env={**os.environ, "COLUMNS": columns,
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                              os.environ.get("PYTHONPATH")]))})
        assert env_code.returncode == 0, env_code.stderr
        lines = env_code.stdout.splitlines()
        assert sum(long_name in line for line in lines) >= 1, columns
        assert sum(f"{long_name}_out" in line for line in lines) == 2, columns
        assert str(net) in env_code.stdout, columns


def test_forward_json_summarises_the_outputs(tiny):
    import json

    code, stdout, stderr = bnlint("forward", "--format", "json", "--seed", "3", str(tiny))
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["version"] == 1 and document["state"] == "TEST"
    assert document["inputs"] == {"data": [1, 2, 4, 4]}
    [prob] = document["blobs"]
    assert prob["name"] == "prob" and prob["shape"] == [1, 5] and prob["nonfinite"] == 0
    assert 0.0 <= prob["min"] <= prob["mean"] <= prob["max"] <= 1.0
    assert abs(prob["mean"] - 0.2) < 1e-6          # softmax over 5 classes
    assert document["losses"] == []


@pytest.mark.parametrize("command", ["info", "forward"])
def test_color_options_win_over_the_environment(tiny, command, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    code, stdout, stderr = bnlint(command, "--color", str(tiny))
    assert code == 0, stderr
    assert "\x1b[" in stdout
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, stdout, stderr = bnlint(command, "--no-color", str(tiny))
    assert code == 0, stderr
    assert "\x1b[" not in stdout
    code, stdout, stderr = bnlint(command, str(tiny))
    assert "\x1b[" in stdout                        # FORCE_COLOR alone


LOSS_NET = """name: "losses"
layer { name: "data" type: "Data" top: "data" top: "label"
  data_param { source: "lmdb" batch_size: 4 backend: LMDB } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss"
  loss_weight: 2 }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" }
"""


def test_forward_runs_losses_when_their_labels_are_given(tmp_path):
    net = tmp_path / "losses.prototxt"
    net.write_text(LOSS_NET)
    np.savez(tmp_path / "in.npz", data=np.ones((4, 5), np.float32),
             label=np.array([0, 2, 1, 2], np.float32))
    out = tmp_path / "out.npz"
    code, stdout, stderr = bnlint("forward", str(net), "--phase", "train",
                                  "--inputs", str(tmp_path / "in.npz"), "-o", str(out))
    assert code == 0, stderr
    blobs = load(out)
    assert set(blobs) == {"loss", "acc"} and blobs["loss"].shape == ()
    assert f"loss loss = {float(blobs['loss']):.6g} (* 2 = " in stdout
    # without labels: up to the predictions, and a note says why
    code, stdout, stderr = bnlint("forward", str(net), "--phase", "train",
                                  "--input-shape", "data=4,5", "-o", str(out))
    assert code == 0, stderr
    assert set(load(out)) == {"fc"} and "not run" in stderr
    code, stdout, stderr = bnlint("forward", str(net), "--phase", "train", "--format", "json",
                                  "--inputs", str(tmp_path / "in.npz"))
    assert code == 0, stderr
    [loss] = json.loads(stdout)["losses"]
    assert loss["top"] == "loss" and loss["weight"] == 2
    assert abs(loss["weighted"] - 2 * float(blobs["loss"])) < 1e-6


def test_forward_refuses_a_loss_whose_label_is_missing(tmp_path):
    net = tmp_path / "losses.prototxt"
    net.write_text(LOSS_NET)
    code, _, stderr = bnlint("forward", str(net), "--phase", "train",
                             "--input-shape", "data=4,5", "--blobs", "loss")
    assert code == 2
    assert "losses.prototxt:6:1: layer 'loss' (SoftmaxWithLoss) needs its label 'label'" \
        in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", ["info", "forward"])
def test_stdin_is_shown_as_stdin(tiny, command):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "bnlint", command, "-"], input=tiny.read_text(),
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("<stdin>")
    proc = subprocess.run([sys.executable, "-m", "bnlint", command, "--format", "json", "-"],
                          input=tiny.read_text(), capture_output=True, text=True, env=env,
                          timeout=300)
    assert json.loads(proc.stdout)["net"] == "<stdin>"
