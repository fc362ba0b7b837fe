"""`bnlint export onnx`: one micro-net per parameter edge case, each exported, then run in
onnxruntime by the test itself and compared with bnlint's forward (so a converter that
is silently wrong fails here even if the export's own verification were bypassed);
refusals by layer name; a wrong converter caught by the verification; the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, GOLDEN, needs_shared

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

from bnlint.caffe.load import parse_text  # noqa: E402
from bnlint.caffe.net import NetState, net_view  # noqa: E402
from bnlint.errors import BnlintError  # noqa: E402
from bnlint.export.onnx.export import ExportOptions, export_onnx  # noqa: E402
from bnlint.export.onnx.model import ExportMismatch  # noqa: E402
from bnlint.export.onnx.registry import CONVERTERS, ExportRefused  # noqa: E402
from bnlint.forward.compare import golden_close  # noqa: E402
from bnlint.forward.executor import Network  # noqa: E402
from bnlint.source import SourceFile  # noqa: E402


def _text_file(text: str, path: str = "micro.prototxt"):
    return parse_text(SourceFile(path, text))


def realistic_weights(text_file, seed: int = 0) -> dict[str, list[np.ndarray]]:
    from bnlint.forward.verify import layer_rng, realistic_blobs

    view = net_view(text_file)
    filled = Network(view, NetState()).blobs
    by_name = {lv.name: lv for lv in view.layers}
    return {name: realistic_blobs(by_name[name].message, [b.shape for b in blobs],
                                  layer_rng(seed, name))
            for name, blobs in filled.items() if blobs}


def net(layers: str, shape=(2, 4, 9, 9), extra_input: str = "") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'name: "micro"\ninput: "data"\ninput_shape {{ {dims} }}\n{extra_input}{layers}'


def run_exported(model_bytes: bytes, inputs: dict) -> dict:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def export_and_compare(text: str, weights=None, **options):
    """Export, then run the written model at its own batch and compare every output
    with bnlint's forward of the original net."""
    text_file = _text_file(text)
    weights = realistic_weights(text_file) if weights is None else weights
    assert not text_file.problems
    result = export_onnx(text_file, weights, ExportOptions(**options))
    view = net_view(text_file)
    reference = Network(view, NetState(), weights)
    rng = np.random.default_rng(7)
    inputs = {name: rng.uniform(-1, 1, shape).astype(np.float32)
              for name, shape in reference.input_shapes().items()}
    got = run_exported(result.model, inputs)
    wanted = options.get("until") or reference.output_names
    assert set(got) == set(wanted)
    expected = reference.run(inputs, keep=set(wanted))
    for name, value in expected.items():
        comparison = golden_close(got[name], value)
        assert comparison.ok, (name, comparison.describe())
    return result, onnx.load_from_string(result.model)


MICRO_NETS = {
    # ceil rounding: an end pad larger than the front pad, and an AVE divisor that
    # counts the padding but not the overhang past it
    "pool_ave_ceil_pad": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                         'pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }',
    "pool_max_ceil": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                     'pooling_param { pool: MAX kernel_size: 3 stride: 2 } }',
    "pool_ave_ceil_nopad": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                           'pooling_param { pool: AVE kernel_size: 2 stride: 2 } }',
    "pool_floor": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                  'pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR } }',
    "pool_global": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                   'pooling_param { pool: AVE global_pooling: true } }',
    "pool_rect": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                 'pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 '
                 'pad_h: 1 pad_w: 0 } }',
    "lrn_across_k": 'layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
                    'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }',
    "lrn_within": 'layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
                  'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }',
    "eltwise_coeff": 'layer { name: "sq" type: "Power" bottom: "data" top: "sq" '
                     'power_param { power: 2 scale: 0.5 shift: 1 } }\n'
                     'layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "sq" top: "sum" '
                     'eltwise_param { operation: SUM coeff: 0.5 coeff: -2 } }',
    "eltwise_prod_max": 'layer { name: "e" type: "Exp" bottom: "data" top: "e" '
                        'exp_param { base: 2 scale: 0.5 shift: 0.25 } }\n'
                        'layer { name: "prod" type: "Eltwise" bottom: "data" bottom: "e" '
                        'bottom: "e" top: "prod" eltwise_param { operation: PROD } }\n'
                        'layer { name: "max" type: "Eltwise" bottom: "prod" bottom: "data" '
                        'top: "max" eltwise_param { operation: MAX } }',
    "inner_product_axis2": 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                           'inner_product_param { num_output: 5 axis: 2 } }',
    "inner_product_transpose": 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                               'inner_product_param { num_output: 5 transpose: true } }',
    "softmax_axis2": 'layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" '
                     'softmax_param { axis: 2 } }',
    "softmax_axis1": 'layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }',
    "deconv_groups": 'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" '
                     'convolution_param { num_output: 4 group: 2 kernel_size: 4 stride: 2 pad: 1 } }',
    "conv_dilated_groups": 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                           'convolution_param { num_output: 6 group: 2 kernel_size: 3 dilation: 2 '
                           'pad: 2 stride: 2 } }',
    "conv_depthwise_rect": 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                           'convolution_param { num_output: 4 group: 4 kernel_h: 3 kernel_w: 1 '
                           'pad_h: 1 bias_term: false } }',
    "in_place_chain": 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                      'convolution_param { num_output: 3 kernel_size: 1 } }\n'
                      'layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" '
                      'batch_norm_param { use_global_stats: true eps: 0.001 } }\n'
                      'layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" '
                      'scale_param { bias_term: true } }\n'
                      'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" '
                      'relu_param { negative_slope: 0.1 } }',
    "activations": 'layer { name: "prelu" type: "PReLU" bottom: "data" top: "a" }\n'
                   'layer { name: "elu" type: "ELU" bottom: "a" top: "b" elu_param { alpha: 0.7 } }\n'
                   'layer { name: "bnll" type: "BNLL" bottom: "b" top: "c" }\n'
                   'layer { name: "tanh" type: "TanH" bottom: "c" top: "d" }\n'
                   'layer { name: "abs" type: "AbsVal" bottom: "d" top: "e" }\n'
                   'layer { name: "log" type: "Log" bottom: "e" top: "f" '
                   'log_param { base: 10 scale: 2 shift: 1 } }\n'
                   'layer { name: "thr" type: "Threshold" bottom: "f" top: "g" '
                   'threshold_param { threshold: 0.1 } }\n'
                   'layer { name: "clip" type: "Clip" bottom: "data" top: "h" '
                   'clip_param { min: -0.3 max: 0.4 } }\n'
                   'layer { name: "sig" type: "Sigmoid" bottom: "h" top: "h" }\n'
                   'layer { name: "drop" type: "Dropout" bottom: "h" top: "h" }',
    "power_constant": 'layer { name: "p" type: "Power" bottom: "data" top: "p" '
                      'power_param { power: 2 scale: 0 shift: 3 } }',
    "mvn_variants": 'layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }\n'
                    'layer { name: "mvn2" type: "MVN" bottom: "data" top: "mvn2" '
                    'mvn_param { across_channels: true eps: 0.01 } }\n'
                    'layer { name: "mvn3" type: "MVN" bottom: "data" top: "mvn3" '
                    'mvn_param { normalize_variance: false } }',
    "scale_axes_bias": 'layer { name: "scale" type: "Scale" bottom: "data" top: "s" '
                       'scale_param { axis: 2 num_axes: 2 } }\n'
                       'layer { name: "bias" type: "Bias" bottom: "s" top: "b" }',
    "structural": 'layer { name: "slice" type: "Slice" bottom: "data" top: "s1" top: "s2" '
                  'slice_param { axis: 1 slice_point: 1 } }\n'
                  'layer { name: "concat" type: "Concat" bottom: "s2" bottom: "s1" top: "c" }\n'
                  'layer { name: "flat" type: "Flatten" bottom: "c" top: "f" '
                  'flatten_param { axis: 1 end_axis: 2 } }\n'
                  'layer { name: "reshape" type: "Reshape" bottom: "f" top: "r" '
                  'reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }\n'
                  'layer { name: "tile" type: "Tile" bottom: "r" top: "t" '
                  'tile_param { axis: 1 tiles: 2 } }\n'
                  'layer { name: "red" type: "Reduction" bottom: "t" top: "red" '
                  'reduction_param { operation: MEAN axis: 1 coeff: 2 } }\n'
                  'layer { name: "red2" type: "Reduction" bottom: "t" top: "red2" '
                  'reduction_param { operation: ASUM axis: 2 } }\n'
                  'layer { name: "red3" type: "Reduction" bottom: "t" top: "red3" '
                  'reduction_param { operation: SUMSQ axis: 1 } }',
    "argmax": 'layer { name: "am" type: "ArgMax" bottom: "data" top: "am" '
              'argmax_param { top_k: 3 axis: 1 } }\n'
              'layer { name: "am2" type: "ArgMax" bottom: "data" top: "am2" '
              'argmax_param { top_k: 2 out_max_val: true } }',
    "depthwise_and_axpy": 'layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" '
                          'top: "dw" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
                          'layer { name: "gap" type: "Pooling" bottom: "dw" top: "gap" '
                          'pooling_param { pool: AVE global_pooling: true } }\n'
                          'layer { name: "axpy" type: "Axpy" bottom: "gap" bottom: "dw" '
                          'bottom: "data" top: "axpy" }',
    "crop": 'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            'layer { name: "crop" type: "Crop" bottom: "data" bottom: "pool" top: "crop" '
            'crop_param { axis: 2 offset: 1 offset: 2 } }',
}


@pytest.mark.parametrize("case", sorted(MICRO_NETS))
def test_micro_net_matches_forward(case):
    result, model = export_and_compare(net(MICRO_NETS[case]))
    assert [i.name for i in model.graph.input] == ["data"]
    assert result.verified_batches[0] >= 2


@pytest.mark.parametrize("fold", [True, False])
def test_batchnorm_scale_factor_guard_and_folding(fold):
    text = net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
               'convolution_param { num_output: 3 kernel_size: 1 } }\n'
               'layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "bn" '
               'batch_norm_param { use_global_stats: true eps: 0.01 } }\n'
               'layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" '
               'batch_norm_param { use_global_stats: true } }')
    weights = realistic_weights(_text_file(text))
    weights["bn0"][2] = np.zeros(1, np.float32)       # Caffe: mean 0, variance 0
    result, model = export_and_compare(text, weights, fold=fold)
    types = [n.op_type for n in model.graph.node]
    assert ("BatchNormalization" in types) == (not fold) or "bn0" in [n.name for n in
                                                                      model.graph.node]
    if fold:
        assert [s.batchnorm.name for s in result.folded if s.action == "folded"] == ["bn"]
    else:
        bn = next(n for n in model.graph.node if n.name == "bn")
        assert bn.op_type == "BatchNormalization"
        assert onnx.helper.get_attribute_value(bn.attribute[0]) == pytest.approx(0.01)


def test_in_place_chain_keeps_caffe_names():
    _, model = export_and_compare(net(MICRO_NETS["in_place_chain"]), fold=False)
    names = [n.name for n in model.graph.node]
    assert names == ["conv", "bn", "scale/Mul", "scale", "relu"]
    assert [o.name for o in model.graph.output] == ["conv"]
    assert model.graph.node[0].output == ["conv/conv"]


def test_dynamic_batch_runs_at_any_batch():
    result, model = export_and_compare(net(MICRO_NETS["inner_product_axis2"]), dynamic_batch=True)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"
    session = ort.InferenceSession(result.model, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"data": np.ones((5, 4, 9, 9), np.float32)})
    assert out.shape == (5, 4, 5)


def test_static_batch_one_verified_at_two():
    result, model = export_and_compare(net(MICRO_NETS["softmax_axis1"], shape=(1, 3, 4, 4)))
    assert result.verified_batches == [2, 1]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 4, 4]


@pytest.mark.parametrize("opset", [13, 17])
def test_older_opsets(opset):
    result, model = export_and_compare(net(MICRO_NETS["mvn_variants"]), opset=opset)
    assert model.opset_import[0].version == opset


def test_segnet_pool_mask_and_upsample():
    text = net('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" '
               'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
               'layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up" '
               'upsample_param { scale: 2 } }', shape=(2, 3, 8, 8))
    export_and_compare(text)


def test_ssd_layers_and_until():
    text = net('layer { name: "norm" type: "Normalize" bottom: "data" top: "norm" '
               'norm_param { across_spatial: false channel_shared: false } }\n'
               'layer { name: "perm" type: "Permute" bottom: "norm" top: "perm" '
               'permute_param { order: 0 order: 2 order: 3 order: 1 } }\n'
               'layer { name: "flat" type: "Flatten" bottom: "perm" top: "flat" }\n'
               'layer { name: "prior" type: "PriorBox" bottom: "norm" bottom: "data" '
               'top: "prior" prior_box_param { min_size: 4 max_size: 8 aspect_ratio: 2 '
               'flip: true clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }',
               shape=(2, 4, 6, 6))
    weights = {"norm": [np.random.default_rng(1).uniform(0.5, 20, 4).astype(np.float32)]}
    _, model = export_and_compare(text, weights)
    assert {o.name for o in model.graph.output} == {"flat", "prior"}
    _, model = export_and_compare(text, weights, until=["perm"])
    assert [o.name for o in model.graph.output] == ["perm"]
    assert "prior" not in [n.name for n in model.graph.node]


def test_fork_layers():
    text = net('layer { name: "shuffle" type: "ShuffleChannel" bottom: "data" top: "sh" '
               'shuffle_channel_param { group: 2 } }\n'
               'layer { name: "relu6" type: "ReLU6" bottom: "sh" top: "r6" }\n'
               'layer { name: "interp" type: "Interp" bottom: "r6" bottom: "big" top: "up" }\n'
               'layer { name: "interp2" type: "Interp" bottom: "big" bottom: "data" '
               'top: "down" }',
               shape=(2, 4, 6, 6), extra_input='input: "big"\ninput_shape { dim: 2 dim: 4 '
                                               'dim: 11 dim: 13 }\n')
    export_and_compare(text)


def _refusal(text: str, **options) -> BnlintError:
    text_file = _text_file(text)
    with pytest.raises(BnlintError) as info:
        export_onnx(text_file, realistic_weights(text_file), ExportOptions(**options))
    assert info.value.exit_code == 2
    return info.value


def test_refuses_batch_statistics_by_name():
    err = _refusal(net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
                       'batch_norm_param { use_global_stats: false } }'), fold=False)
    assert isinstance(err, ExportRefused) and "layer 'bn' (BatchNorm)" in err.message


def test_refuses_stochastic_pooling_and_empty_windows():
    err = _refusal(net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                       'pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 } }'))
    assert "layer 'p' (Pooling)" in err.message
    err = _refusal(net('layer { name: "q" type: "Pooling" bottom: "data" top: "q" '
                       'pooling_param { pool: MAX kernel_size: 1 stride: 2 } }',
                       shape=(2, 1, 6, 6)))
    assert "layer 'q' (Pooling)" in err.message


def test_refuses_missing_weights():
    text = net(MICRO_NETS["inner_product_transpose"])
    with pytest.raises(BnlintError) as info:
        export_onnx(_text_file(text), {}, ExportOptions())
    assert "'fc'" in info.value.message


def test_wrong_converter_is_caught_and_located(monkeypatch):
    """A converter that is silently wrong (LRN without its k) never reaches the disk."""
    from bnlint.export.onnx.convert import norm

    def lrn_without_k(nodes):
        op = nodes.op
        nodes.node("LRN", [nodes.bottoms[0]], nodes.tops[0], alpha=float(op.alpha),
                   beta=float(-op.neg_beta), size=op.size)

    monkeypatch.setitem(CONVERTERS, "LRN", lrn_without_k)
    text = net('layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
               'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }\n'
               'layer { name: "relu" type: "ReLU" bottom: "norm" top: "out" }')
    text_file = _text_file(text)
    with pytest.raises(ExportMismatch) as info:
        export_onnx(text_file, realistic_weights(text_file), ExportOptions())
    assert info.value.exit_code == 1
    assert "first diverging layer: LRN 'norm'" in info.value.message
    assert norm.lrn is not lrn_without_k


def test_cli_exports_the_bundled_fixture(tmp_path, run_cli):
    from bnlint.caffe.weights import caffemodel_bytes

    deploy = FIXTURES / "verify" / "deploy.prototxt"
    text_file = parse_text(SourceFile(str(deploy), deploy.read_text()))
    weights = realistic_weights(text_file)
    weights_path = tmp_path / "deploy.caffemodel"
    weights_path.write_bytes(caffemodel_bytes(net_view(text_file), weights))
    out = tmp_path / "deploy.onnx"
    code, stdout, stderr = run_cli("export", "onnx", str(deploy), "--weights", str(weights_path),
                                   "-o", str(out), "--check-blobs")
    assert code == 0, stderr
    assert "verified" in stdout
    reference = Network(net_view(text_file), NetState(), weights)
    inputs = {"data": np.random.default_rng(3).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)}
    expected = reference.run(inputs)
    got = run_exported(out.read_bytes(), inputs)
    for name, value in expected.items():
        assert golden_close(got[name], value).ok


def test_cli_refusal_writes_nothing(tmp_path, run_cli):
    from bnlint.caffe.weights import caffemodel_bytes

    hand = FIXTURES / "examples" / "tiny_resnet_deploy_by_hand.prototxt"
    text_file = parse_text(SourceFile(str(hand), hand.read_text()))
    weights_path = tmp_path / "w.caffemodel"
    weights_path.write_bytes(caffemodel_bytes(net_view(text_file), realistic_weights(text_file)))
    out = tmp_path / "out.onnx"
    code, _, stderr = run_cli("export", "onnx", str(hand), "--weights", str(weights_path),
                              "-o", str(out), "--no-fold")
    assert code == 2
    assert "layer 'conv1/bn' (BatchNorm)" in stderr
    assert not out.exists()
    code, _, stderr = run_cli("export", "onnx", str(hand), "--weights", str(weights_path),
                              "-o", str(out), "--opset", "12")
    assert code == 2 and "--opset 12" in stderr


@needs_shared
@pytest.mark.parametrize("name", ["conv_pool", "elementwise", "bn_variants"])
def test_golden_nets_match_real_caffe(name):
    """The exported model, run by onnxruntime, reproduces real Caffe's outputs."""
    from bnlint.caffe.weights import read_weights

    folder = GOLDEN / name
    text_file = parse_text(SourceFile(str(folder / "net.prototxt"),
                                      (folder / "net.prototxt").read_text()))
    result = export_onnx(text_file, read_weights(str(folder / "weights.caffemodel")),
                         ExportOptions(dynamic_batch=True))
    with np.load(folder / "inputs.npz") as data:
        inputs = {k: data[k] for k in data.files}
    got = run_exported(result.model, inputs)
    with np.load(folder / "outputs.npz") as data:
        compared = [k for k in data.files if k in got]
        assert compared
        for key in compared:
            assert golden_close(got[key], data[key]).ok, key


RARE = {
    "spp": 'layer { name: "spp" type: "SPP" bottom: "data" top: "spp" '
           'spp_param { pyramid_height: 3 pool: AVE } }\n'
           'layer { name: "spp1" type: "SPP" bottom: "data" top: "spp1" '
           'spp_param { pyramid_height: 1 pool: MAX } }',
    "im2col": 'layer { name: "im" type: "Im2col" bottom: "data" top: "im" '
              'convolution_param { kernel_h: 3 kernel_w: 2 stride: 2 pad: 1 dilation: 2 } }',
}


@pytest.mark.parametrize("case", sorted(RARE))
def test_rare_bvlc_layers(case):
    text = net(RARE[case], shape=(2, 3, 9, 7))
    try:
        Network(net_view(_text_file(text)), NetState())
    except BnlintError as err:
        if "unknown layer type" in err.message:
            pytest.skip(f"bnlint's forward does not run {case} in this tree: {err.message}")
        raise
    export_and_compare(text)


def test_recurrent_layers_are_refused_by_name():
    text = ('input: "x"\ninput_shape { dim: 3 dim: 2 dim: 4 }\ninput: "cont"\n'
            'input_shape { dim: 3 dim: 2 }\n'
            'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h" '
            'recurrent_param { num_output: 5 } }')
    text_file = _text_file(text)
    try:
        weights = realistic_weights(text_file)
    except BnlintError as err:
        pytest.skip(f"bnlint's forward does not run LSTM in this tree: {err.message}")
    with pytest.raises(ExportRefused) as info:
        export_onnx(text_file, weights, ExportOptions())
    assert "layer 'lstm' (LSTM)" in info.value.message


FOLD_FIXTURES = sorted(p.name for p in (FIXTURES / "fold").glob("*.prototxt")
                       if ".folded." not in p.name and ".bvlc." not in p.name)


@pytest.mark.parametrize("fold", [True, False], ids=["fold", "no-fold"])
@pytest.mark.parametrize("name", FOLD_FIXTURES)
def test_batchnorm_forms_of_every_dialect(name, fold):
    """BVLC, NVIDIA Caffe (5 blobs, eps floor) and SegNet's BN, in place or not, before
    Convolution, Deconvolution with groups and InnerProduct, folded or kept."""
    text = (FIXTURES / "fold" / name).read_text()
    if name == "batch_stats.prototxt":
        err = _refusal(text, fold=fold)
        assert "(BatchNorm)" in err.message and "batch's own statistics" in err.message
        return
    result, model = export_and_compare(text, fold=fold)
    assert bool(result.folded) == fold
    types = [n.op_type for n in model.graph.node]
    if not fold and name != "segnet.prototxt":        # SegNet's BN is x * scale + shift
        assert "BatchNormalization" in types
