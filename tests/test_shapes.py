"""Shape inference (bnlint.caffe.shapes) against sizes worked out from Caffe's code."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlint.caffe import caffe_pb2, cost, shapes
from bnlint.errors import ShapeError


def layer(text: str) -> caffe_pb2.LayerParameter:
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def infer(text: str, *bottoms: tuple[int, ...]) -> shapes.LayerShapes:
    return shapes.infer(layer(text), list(bottoms))


def test_module_does_not_import_numpy():
    code = ("import sys; import bnlint.caffe.shapes; "
            "sys.exit(1 if 'numpy' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- convolution


def test_convolution_tops_and_params():
    result = infer('name: "c" type: "Convolution" top: "c" convolution_param '
                   '{ num_output: 64 kernel_size: 7 stride: 2 pad: 3 }', (1, 3, 224, 224))
    assert result.tops == [(1, 64, 112, 112)]
    assert result.params == [(64, 3, 7, 7), (64,)]
    assert result.param_count == 64 * 3 * 49 + 64


def test_convolution_rectangular_groups_dilation_no_bias():
    result = infer('name: "c" type: "Convolution" convolution_param { num_output: 9 '
                   'kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 '
                   'dilation: 2 group: 3 bias_term: false }', (2, 6, 19, 22))
    # height: (19 + 2 - (2*2+1)) // 2 + 1 = 9; width: (22 + 4 - 9) // 1 + 1 = 18
    assert result.tops == [(2, 9, 9, 18)]
    assert result.params == [(9, 2, 3, 5)]


def test_convolution_per_axis_repeated_fields():
    result = infer('name: "c" type: "Convolution" convolution_param { num_output: 4 '
                   'kernel_size: 3 kernel_size: 1 stride: 1 stride: 2 pad: 1 pad: 0 }',
                   (1, 2, 8, 8))
    assert result.tops == [(1, 4, 8, 4)]
    assert result.params[0] == (4, 2, 3, 1)


def test_convolution_axis_and_3d():
    result = infer('name: "c" type: "Convolution" convolution_param { num_output: 5 '
                   'kernel_size: 3 axis: 2 }', (2, 3, 4, 10))
    assert result.tops == [(2, 3, 5, 8)]          # 1-D convolution over the last axis
    assert result.params[0] == (5, 4, 3)
    result = infer('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                   'kernel_size: 3 pad: 1 }', (1, 3, 4, 5, 6))
    assert result.tops == [(1, 2, 4, 5, 6)]
    assert result.params[0] == (2, 3, 3, 3, 3)


def test_convolution_several_bottoms_give_several_tops():
    result = infer('name: "c" type: "Convolution" convolution_param { num_output: 2 '
                   'kernel_size: 1 }', (1, 3, 4, 4), (1, 3, 4, 4))
    assert result.tops == [(1, 2, 4, 4)] * 2
    with pytest.raises(ShapeError, match="same shape"):
        infer('name: "c" type: "Convolution" convolution_param { num_output: 2 '
              'kernel_size: 1 }', (1, 3, 4, 4), (1, 3, 4, 5))


def test_deconvolution_groups():
    result = infer('name: "d" type: "Deconvolution" convolution_param { num_output: 6 '
                   'kernel_size: 4 stride: 2 pad: 1 group: 3 }', (2, 9, 6, 12))
    assert result.tops == [(2, 6, 12, 24)]
    assert result.params == [(9, 2, 4, 4), (6,)]       # (C, O/g, kh, kw)


def test_deconvolution_dilation():
    result = infer('name: "d" type: "Deconvolution" convolution_param { num_output: 1 '
                   'kernel_size: 3 stride: 3 dilation: 2 }', (1, 1, 5, 5))
    assert result.tops == [(1, 1, 17, 17)]             # 3*4 + 2*2 + 1


@pytest.mark.parametrize("param, message", [
    ("num_output: 4 kernel_size: 5", "larger than the padded input"),
    ("num_output: 4", "kernel_size must be given"),
    ("num_output: 4 kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both"),
    ("num_output: 4 kernel_h: 3", "must be positive"),
    ("num_output: 4 kernel_size: 1 group: 2", "group 2"),
    ("num_output: 4 kernel_size: 1 group: 3", "group 3"),
    ("kernel_size: 1", "num_output"),
    ("num_output: 4 kernel_size: 1 stride: 0", "stride"),
    ("num_output: 4 kernel_size: 1 axis: 4", "axis 4"),
    ("num_output: 4 kernel_size: 1 kernel_size: 1 kernel_size: 1", "once per spatial"),
])
def test_convolution_errors(param, message):
    with pytest.raises(ShapeError, match=message) as info:
        infer(f'name: "bad" type: "Convolution" convolution_param {{ {param} }}',
              (1, 3, 4, 4))
    assert "layer 'bad' (Convolution)" in info.value.message


def test_deconvolution_non_positive_output():
    with pytest.raises(ShapeError, match="not positive"):
        infer('name: "d" type: "Deconvolution" convolution_param { num_output: 1 '
              'kernel_size: 2 pad: 2 }', (1, 1, 1, 1))


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       pad=st.integers(0, 3), dilation=st.integers(1, 3))
def test_convolution_size_formula(size, kernel, stride, pad, dilation):
    text = (f'name: "c" type: "Convolution" convolution_param {{ num_output: 1 '
            f'kernel_size: {kernel} stride: {stride} pad: {pad} dilation: {dilation} }}')
    extent = dilation * (kernel - 1) + 1
    if size + 2 * pad < extent:
        with pytest.raises(ShapeError):
            infer(text, (1, 1, size, size))
        return
    expected = math.floor((size + 2 * pad - extent) / stride) + 1
    assert infer(text, (1, 1, size, size)).tops == [(1, 1, expected, expected)]


# ---------------------------------------------------------------- pooling


def caffe_pooled_size(size, kernel, stride, pad, ceil_mode=True):
    """pooling_layer.cpp's Reshape, written out."""
    rounding = math.ceil if ceil_mode else math.floor
    pooled = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def pooling(param: str, shape=(2, 3, 13, 13)) -> tuple[int, ...]:
    return infer(f'name: "p" type: "Pooling" pooling_param {{ {param} }}', shape).tops[0]


def test_pooling_ceil_is_the_default():
    # GoogLeNet / AlexNet: 3x3/2 on 112 -> ceil(109/2)+1 = 56 (floor would say 55)
    assert pooling("pool: MAX kernel_size: 3 stride: 2", (1, 64, 112, 112)) == (1, 64, 56, 56)
    assert pooling("pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR",
                   (1, 64, 112, 112)) == (1, 64, 55, 55)


def test_pooling_last_window_in_padding_is_dropped():
    # 3x3/3 pad 2 on 6: ceil(7/3)+1 = 4, but window 3 would start at 3*3 - 2 = 7, past
    # the input (size 6), so Caffe drops it
    assert caffe_pooled_size(6, 3, 3, 2) == 3
    assert pooling("pool: AVE kernel_size: 3 stride: 3 pad: 2", (1, 1, 6, 6)) == (1, 1, 3, 3)
    # no drop when the last window starts inside: 3x3/2 pad 1 on 4 gives 3
    assert pooling("pool: AVE kernel_size: 3 stride: 2 pad: 1", (1, 1, 4, 4)) == (1, 1, 3, 3)
    # 2x2/2 pad 1 on 5: ceil(5/2)+1 = 4; window 3 starts at 6 - 1 = 5 = H: dropped
    assert pooling("pool: MAX kernel_size: 2 stride: 2 pad: 1", (1, 1, 5, 5)) == (1, 1, 3, 3)


def test_pooling_rectangular_and_global():
    assert pooling("pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 3 stride_w: 2 "
                   "pad_h: 1 pad_w: 1", (2, 9, 10, 22)) == (2, 9, 4, 12)
    assert pooling("pool: AVE global_pooling: true", (2, 9, 7, 5)) == (2, 9, 1, 1)


def test_pooling_kernel_larger_than_input_still_gives_one_output():
    # ceil((2 - 3) / 2) + 1 = 1: Caffe clips the window to the input.
    assert pooling("pool: MAX kernel_size: 3 stride: 2", (1, 1, 2, 2)) == (1, 1, 1, 1)


def test_pooling_mask_top():
    result = infer('name: "p" type: "Pooling" top: "p" top: "mask" pooling_param '
                   '{ pool: MAX kernel_size: 2 stride: 2 }', (1, 2, 4, 4))
    assert result.tops == [(1, 2, 2, 2)] * 2


@pytest.mark.parametrize("param, shape, message", [
    ("pool: MAX kernel_size: 3 stride: 1", (1, 1, 1, 1), "gives no output"),
    ("pool: MAX kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 1, 5, 5), "either kernel_size"),
    ("pool: MAX kernel_h: 3", (1, 1, 5, 5), "either kernel_size"),
    ("pool: MAX", (1, 1, 5, 5), "either kernel_size"),
    ("pool: MAX kernel_size: 2 pad: 2", (1, 1, 5, 5), "smaller than the kernel"),
    ("pool: STOCHASTIC kernel_size: 2 pad: 1", (1, 1, 5, 5), "only for MAX and AVE"),
    ("pool: AVE global_pooling: true kernel_size: 2", (1, 1, 5, 5), "no kernel size"),
    ("pool: AVE global_pooling: true stride: 2", (1, 1, 5, 5), "stride 1"),
    ("pool: MAX kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1", (1, 1, 5, 5), "pad_h and pad_w"),
    ("pool: MAX kernel_size: 2", (1, 5, 5), "4-D"),
])
def test_pooling_errors(param, shape, message):
    with pytest.raises(ShapeError, match=message):
        pooling(param, shape)


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 30), kernel=st.integers(1, 6), stride=st.integers(1, 4),
       pad=st.integers(0, 5), floor=st.booleans())
def test_pooling_size_formula(size, kernel, stride, pad, floor):
    if pad >= kernel:
        pad = kernel - 1
    expected = caffe_pooled_size(size, kernel, stride, pad, ceil_mode=not floor)
    param = (f"pool: AVE kernel_size: {kernel} stride: {stride} pad: {pad}"
             + (" round_mode: FLOOR" if floor else ""))
    if expected <= 0:
        with pytest.raises(ShapeError):
            pooling(param, (1, 1, size, size))
        return
    assert pooling(param, (1, 1, size, size)) == (1, 1, expected, expected)


# ---------------------------------------------------------------- dense, affine, norm


def test_inner_product_axis_and_transpose():
    result = infer('name: "ip" type: "InnerProduct" inner_product_param '
                   '{ num_output: 4 axis: 2 }', (2, 9, 4, 12))
    assert result.tops == [(2, 9, 4)]
    assert result.params == [(4, 48), (4,)]
    result = infer('name: "ip" type: "InnerProduct" inner_product_param '
                   '{ num_output: 5 transpose: true bias_term: false }', (2, 9, 1, 1))
    assert result.tops == [(2, 5)]
    assert result.params == [(9, 5)]
    result = infer('name: "ip" type: "InnerProduct" inner_product_param '
                   '{ num_output: 3 axis: -1 }', (2, 6, 7))
    assert result.tops == [(2, 6, 3)]


def test_embed():
    result = infer('name: "e" type: "Embed" embed_param { num_output: 8 input_dim: 100 }',
                   (4, 7))
    assert result.tops == [(4, 7, 8)]
    assert result.params == [(100, 8), (8,)]


def test_batch_norm_params():
    assert infer('name: "bn" type: "BatchNorm"', (1, 32, 8, 8)).params == [(32,), (32,), (1,)]
    assert infer('name: "bn" type: "BatchNorm"', (5,)).params == [(1,), (1,), (1,)]


def test_scale_one_bottom():
    assert infer('name: "s" type: "Scale" scale_param { bias_term: true }',
                 (1, 32, 8, 8)).params == [(32,), (32,)]
    assert infer('name: "s" type: "Scale" scale_param { axis: 2 num_axes: 2 }',
                 (1, 3, 8, 9)).params == [(8, 9)]
    assert infer('name: "s" type: "Scale" scale_param { axis: 1 num_axes: -1 }',
                 (1, 3, 8, 9)).params == [(3, 8, 9)]
    assert infer('name: "s" type: "Scale" scale_param { num_axes: 0 }',
                 (1, 3, 8, 9)).params == [()]
    with pytest.raises(ShapeError, match="extend past"):
        infer('name: "s" type: "Scale" scale_param { axis: 3 num_axes: 2 }', (1, 3, 8, 9))


def test_scale_two_bottoms():
    result = infer('name: "s" type: "Scale" scale_param { axis: 0 }', (2, 64, 7, 7), (2, 64))
    assert result.tops == [(2, 64, 7, 7)] and result.params == []
    result = infer('name: "s" type: "Scale" scale_param { bias_term: true }',
                   (2, 64, 7, 7), (64,))
    assert result.params == [(64,)]
    with pytest.raises(ShapeError, match="does not match"):
        infer('name: "s" type: "Scale"', (2, 64, 7, 7), (32,))


def test_bias():
    assert infer('name: "b" type: "Bias"', (1, 8, 3, 3)).params == [(8,)]
    assert infer('name: "b" type: "Bias"', (1, 8, 3, 3), (8, 3)).params == []
    with pytest.raises(ShapeError):
        infer('name: "b" type: "Bias"', (1, 8, 3, 3), (3,))


def test_prelu_channel_shared_is_a_zero_axis_blob():
    assert infer('name: "p" type: "PReLU"', (1, 16, 4, 4)).params == [(16,)]
    assert infer('name: "p" type: "PReLU" prelu_param { channel_shared: true }',
                 (1, 16, 4, 4)).params == [()]
    with pytest.raises(ShapeError, match="at least 2 axes"):
        infer('name: "p" type: "PReLU"', (16,))


@pytest.mark.parametrize("type_name", [
    "ReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log",
    "Threshold", "Clip", "Swish", "Dropout", "MVN", "Softmax"])
def test_elementwise_keep_the_shape(type_name):
    assert infer(f'name: "x" type: "{type_name}"', (2, 3, 5)).tops == [(2, 3, 5)]


def test_lrn():
    assert infer('name: "n" type: "LRN"', (1, 8, 5, 5)).tops == [(1, 8, 5, 5)]
    with pytest.raises(ShapeError, match="odd"):
        infer('name: "n" type: "LRN" lrn_param { local_size: 4 }', (1, 8, 5, 5))


# ---------------------------------------------------------------- element-wise combine


def test_eltwise():
    assert infer('name: "e" type: "Eltwise"', (1, 4, 3, 3), (1, 4, 3, 3)).tops == [(1, 4, 3, 3)]
    with pytest.raises(ShapeError, match=r"bottom 1 'b' is \(1, 4, 3, 2\)"):
        infer('name: "e" type: "Eltwise" bottom: "a" bottom: "b"', (1, 4, 3, 3), (1, 4, 3, 2))
    with pytest.raises(ShapeError, match="2 coefficients for 3 bottoms"):
        infer('name: "e" type: "Eltwise" eltwise_param { coeff: 1 coeff: 2 }',
              (1, 2), (1, 2), (1, 2))
    with pytest.raises(ShapeError, match="only for SUM"):
        infer('name: "e" type: "Eltwise" eltwise_param { operation: MAX coeff: 1 coeff: 2 }',
              (1, 2), (1, 2))


# ---------------------------------------------------------------- structural


def test_concat():
    assert infer('name: "c" type: "Concat"', (1, 2, 5, 5), (1, 3, 5, 5)).tops == [(1, 5, 5, 5)]
    assert infer('name: "c" type: "Concat" concat_param { axis: -1 }',
                 (1, 2, 5), (1, 2, 3)).tops == [(1, 2, 8)]
    assert infer('name: "c" type: "Concat" concat_param { concat_dim: 0 }',
                 (1, 2), (4, 2)).tops == [(5, 2)]
    with pytest.raises(ShapeError) as info:
        infer('name: "c" type: "Concat"', (1, 2, 5, 5), (1, 3, 4, 5))
    message = info.value.message
    assert "axis 1" in message and "(1, 3, 4, 5)" in message and "(1, 2, 5, 5)" in message


def test_slice():
    result = infer('name: "s" type: "Slice" top: "a" top: "b" top: "c" '
                   'slice_param { slice_point: 1 slice_point: 4 }', (2, 6, 3))
    assert result.tops == [(2, 1, 3), (2, 3, 3), (2, 2, 3)]
    result = infer('name: "s" type: "Slice" top: "a" top: "b" slice_param { axis: -1 }',
                   (2, 6, 4))
    assert result.tops == [(2, 6, 2)] * 2
    result = infer('name: "s" type: "Slice" top: "a" top: "b" slice_param { slice_dim: 0 }',
                   (4, 6))
    assert result.tops == [(2, 6)] * 2


@pytest.mark.parametrize("param, tops, message", [
    ("slice_point: 2", 3, "need 2 tops"),
    ("slice_point: 3 slice_point: 2", 3, "rise strictly"),
    ("slice_point: 6", 2, "rise strictly"),
    ("", 4, "evenly divide"),
    ("axis: 1 slice_dim: 1", 2, "not both"),
])
def test_slice_errors(param, tops, message):
    top_fields = " ".join(f'top: "t{i}"' for i in range(tops))
    with pytest.raises(ShapeError, match=message):
        infer(f'name: "s" type: "Slice" {top_fields} slice_param {{ {param} }}', (2, 6))


def test_split_and_silence():
    assert infer('name: "s" type: "Split" top: "a" top: "b"', (3, 4)).tops == [(3, 4)] * 2
    assert infer('name: "s" type: "Silence"', (3, 4), (5,)).tops == []


def test_flatten():
    assert infer('name: "f" type: "Flatten"', (2, 3, 4, 5)).tops == [(2, 60)]
    assert infer('name: "f" type: "Flatten" flatten_param { axis: 2 }',
                 (2, 3, 4, 5)).tops == [(2, 3, 20)]
    assert infer('name: "f" type: "Flatten" flatten_param { axis: 1 end_axis: 2 }',
                 (2, 3, 4, 5)).tops == [(2, 12, 5)]
    assert infer('name: "f" type: "Flatten" flatten_param { axis: 0 end_axis: -2 }',
                 (2, 3, 4, 5)).tops == [(24, 5)]
    with pytest.raises(ShapeError, match="before axis"):
        infer('name: "f" type: "Flatten" flatten_param { axis: 2 end_axis: 1 }', (2, 3, 4))


@pytest.mark.parametrize("param, bottom, top", [
    ("shape { dim: 0 dim: -1 }", (2, 3, 4, 5), (2, 60)),
    ("shape { dim: 0 dim: 0 dim: -1 dim: 2 }", (2, 3, 4, 6), (2, 3, 12, 2)),
    ("shape { dim: -1 }", (2, 3, 4), (24,)),
    ("shape { dim: 6 dim: 4 }", (2, 3, 4), (6, 4)),
    ("shape { dim: 2 dim: 2 } axis: 1 num_axes: 1", (3, 4, 5), (3, 2, 2, 5)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (3, 4), (3, 1, 4)),
    ("shape { dim: -1 } axis: -2", (3, 4, 5), (3, 4, 5)),
    ("shape { dim: 1 dim: 1 } axis: -1 num_axes: 0", (3, 4), (3, 4, 1, 1)),
    ("shape { dim: 0 dim: 2 dim: -1 } axis: 1", (2, 3, 4, 5), (2, 3, 2, 10)),
])
def test_reshape(param, bottom, top):
    assert infer(f'name: "r" type: "Reshape" reshape_param {{ {param} }}', bottom).tops == [top]


@pytest.mark.parametrize("param, message", [
    ("shape { dim: 5 dim: 5 }", "changes the element count"),
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 7 dim: -1 }", "not divisible"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 3 to copy"),
    ("shape { dim: 24 } axis: 4", "out of range"),
    ("shape { dim: -2 dim: -12 }", "below -1"),
])
def test_reshape_errors(param, message):
    with pytest.raises(ShapeError, match=message):
        infer(f'name: "r" type: "Reshape" reshape_param {{ {param} }}', (2, 3, 4))


def test_crop():
    assert infer('name: "c" type: "Crop"', (1, 3, 10, 12), (1, 5, 6, 7)).tops == [(1, 3, 6, 7)]
    assert infer('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 offset: 2 offset: 3 }',
                 (1, 3, 10, 12), (1, 2, 6, 7)).tops == [(1, 2, 6, 7)]
    assert infer('name: "c" type: "Crop" crop_param { axis: -1 offset: 5 }',
                 (1, 3, 10, 12), (9, 9, 9, 7)).tops == [(1, 3, 10, 7)]
    with pytest.raises(ShapeError, match="does not fit"):
        infer('name: "c" type: "Crop" crop_param { offset: 5 }', (1, 3, 10, 12), (1, 3, 6, 7))
    with pytest.raises(ShapeError, match="does not fit"):
        infer('name: "c" type: "Crop"', (1, 3, 10, 12), (1, 3, 11, 7))
    with pytest.raises(ShapeError, match="one per axis"):
        infer('name: "c" type: "Crop" crop_param { offset: 1 offset: 1 offset: 1 }',
              (1, 3, 10, 12), (1, 3, 6, 7))


def test_tile():
    assert infer('name: "t" type: "Tile" tile_param { tiles: 3 }', (2, 4, 5)).tops == [(2, 12, 5)]
    assert infer('name: "t" type: "Tile" tile_param { tiles: 2 axis: -1 }',
                 (2, 4, 5)).tops == [(2, 4, 10)]
    with pytest.raises(ShapeError, match="tiles"):
        infer('name: "t" type: "Tile"', (2, 4, 5))


def test_argmax():
    assert infer('name: "a" type: "ArgMax"', (2, 10)).tops == [(2, 1, 1)]
    assert infer('name: "a" type: "ArgMax" argmax_param { top_k: 3 out_max_val: true }',
                 (2, 10, 4, 4)).tops == [(2, 2, 3, 1)]
    assert infer('name: "a" type: "ArgMax" argmax_param { top_k: 2 axis: 1 }',
                 (2, 10, 4, 4)).tops == [(2, 2, 4, 4)]
    with pytest.raises(ShapeError, match="top_k 11"):
        infer('name: "a" type: "ArgMax" argmax_param { top_k: 11 axis: 1 }', (2, 10))


def test_reduction_drops_the_trailing_axes():
    assert infer('name: "r" type: "Reduction"', (2, 3, 4)).tops == [()]
    assert infer('name: "r" type: "Reduction" reduction_param { axis: 1 }',
                 (2, 3, 4)).tops == [(2,)]
    assert infer('name: "r" type: "Reduction" reduction_param { axis: -1 }',
                 (2, 3, 4)).tops == [(2, 3)]


# ---------------------------------------------------------------- inputs and data


def test_input():
    result = infer('name: "in" type: "Input" top: "a" top: "b" '
                   'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } }')
    assert result.tops == [(1, 3, 8, 8)] * 2
    result = infer('name: "in" type: "Input" top: "a" top: "b" '
                   'input_param { shape { dim: 1 dim: 3 } shape { dim: 1 } }')
    assert result.tops == [(1, 3), (1,)]
    with pytest.raises(ShapeError, match="no shape"):
        infer('name: "in" type: "Input" top: "a"')


def test_data_layers():
    assert infer('name: "d" type: "DummyData" top: "a" top: "b" dummy_data_param '
                 '{ shape { dim: 2 dim: 3 } shape { dim: 2 } }').tops == [(2, 3), (2,)]
    assert infer('name: "d" type: "DummyData" top: "a" dummy_data_param '
                 '{ num: 2 channels: 3 height: 4 width: 5 }').tops == [(2, 3, 4, 5)]
    assert infer('name: "m" type: "MemoryData" top: "d" top: "l" memory_data_param '
                 '{ batch_size: 8 channels: 3 height: 32 width: 32 }').tops == [
                     (8, 3, 32, 32), (8,)]
    assert infer('name: "i" type: "ImageData" top: "d" top: "l" transform_param '
                 '{ crop_size: 227 } image_data_param { batch_size: 4 }').tops == [
                     (4, 3, 227, 227), (4,)]
    with pytest.raises(shapes.DataDependentShapeError):
        infer('name: "d" type: "Data" top: "d" top: "l"')
    with pytest.raises(shapes.DataDependentShapeError):
        infer('name: "i" type: "ImageData" top: "d"')


def test_losses_and_accuracy():
    assert infer('name: "l" type: "SoftmaxWithLoss"', (8, 10), (8,)).tops == [()]
    assert infer('name: "a" type: "Accuracy" top: "acc" top: "per_class"',
                 (8, 10), (8,)).tops == [(), (10,)]


def test_unknown_type_is_a_distinct_error():
    with pytest.raises(shapes.UnknownLayerTypeError, match="unknown layer type 'NoSuchLayerType'"):
        infer('name: "pb" type: "NoSuchLayerType"', (1, 3, 8, 8))
    assert not issubclass(ShapeError, shapes.UnknownLayerTypeError)
    assert "NoSuchLayerType" not in shapes.known_types()
    assert "Convolution" in shapes.known_types()


def test_wrong_number_of_tops():
    with pytest.raises(ShapeError, match="declares 2 tops"):
        infer('name: "p" type: "Pooling" top: "a" top: "b" pooling_param '
              '{ pool: AVE kernel_size: 2 }', (1, 1, 4, 4))
    with pytest.raises(ShapeError, match="declares 2 tops"):
        infer('name: "r" type: "ReLU" top: "a" top: "b"', (1, 1, 4, 4))
    with pytest.raises(ShapeError, match="declares 1 tops"):
        infer('name: "c" type: "Convolution" top: "a" convolution_param '
              '{ num_output: 1 kernel_size: 1 }', (1, 1, 4, 4), (1, 1, 4, 4))


def test_wrong_number_of_bottoms():
    with pytest.raises(ShapeError, match="takes 2 bottom"):
        infer('name: "c" type: "Crop"', (1, 3, 4, 4))


# ---------------------------------------------------------------- cost


def test_multiply_accumulates():
    conv = layer('name: "c" type: "Convolution" convolution_param '
                 '{ num_output: 64 kernel_size: 3 pad: 1 group: 2 }')
    assert cost.macs(conv, [(1, 64, 8, 8)]) == 64 * 64 * 32 * 9
    ip = layer('name: "ip" type: "InnerProduct" inner_product_param { num_output: 10 }')
    assert cost.macs(ip, [(2, 3, 4, 4)]) == 2 * 10 * 48
    deconv = layer('name: "d" type: "Deconvolution" convolution_param '
                   '{ num_output: 4 kernel_size: 2 stride: 2 }')
    assert cost.macs(deconv, [(1, 3, 5, 5)]) == 3 * 25 * 4 * 4
    assert cost.macs(layer('name: "r" type: "ReLU"'), [(1, 3)]) == 0


def test_senet_axpy_is_x_shaped_and_checks_its_operands():
    text = 'name: "a" type: "Axpy" top: "a"'
    assert infer(text, (2, 8, 1, 1), (2, 8, 7, 7), (2, 8, 7, 7)).tops == [(2, 8, 7, 7)]
    for bottoms in [((2, 8, 1, 1), (2, 8, 7, 7), (2, 8, 7, 6)),
                    ((2, 4, 1, 1), (2, 8, 7, 7), (2, 8, 7, 7)),
                    ((2, 8, 7, 7), (2, 8, 7, 7), (2, 8, 7, 7)),
                    ((2, 8, 1, 1), (2, 8, 7, 7))]:
        with pytest.raises(ShapeError):
            infer(text, *bottoms)
