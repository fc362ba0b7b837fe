"""SENet's Axpy, the ConvolutionDepthwise of ShuffleNet/MobileNet forks, caffenet-benchmark's
EltwiseAffine and the Faster R-CNN / R-FCN ROI poolings, against loop references
written from each fork's source (float32 scalars, in the C++ loop order):

- Axpy: hujie's axpy_layer.cpp (SENet);
- ConvolutionDepthwise: yonghenglh6/DepthwiseConvolution's conv_dw_layer.cpp;
- EltwiseAffine: ducha-aiki/caffe's eltwise_affine_layer.cpp;
- ROIPooling: rbgirshick/caffe-fast-rcnn's roi_pooling_layer.cpp;
- PSROIPooling: daijifeng001/caffe-rfcn's psroi_pooling_layer.cu (its only forward).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, text_format

import bnlint.forward.ops  # noqa: F401  (registers the ops)
from bnlint.caffe import caffe_pb2
from bnlint.caffe.dialects import get_dialect
from bnlint.caffe.phase import Phase
from bnlint.caffe.schema import Schema, default_schema
from bnlint.errors import ForwardError
from bnlint.forward.registry import op_for

F32 = np.float32
FLT_MAX = np.finfo(F32).max


@functools.cache
def affine_schema() -> Schema:
    """BVLC's schema plus caffenet-benchmark's EltwiseAffineParameter (in memory)."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "bnlint_test_affine.proto"
    message = fdp.message_type.add(name="EltwiseAffineParameter")
    for name, number in (("slope_filler", 1), ("bias_filler", 2)):
        message.field.add(name=name, number=number, label=F.LABEL_OPTIONAL,
                          type=F.TYPE_MESSAGE, type_name=".caffe.FillerParameter")
    message.field.add(name="channel_shared", number=3, label=F.LABEL_OPTIONAL,
                      type=F.TYPE_BOOL, default_value="false")
    layer = next(m for m in fdp.message_type if m.name == "LayerParameter")
    layer.field.add(name="eltwise_affine_param", number=5101, label=F.LABEL_OPTIONAL,
                    type=F.TYPE_MESSAGE, type_name=".caffe.EltwiseAffineParameter")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    return Schema(pool.FindFileByName(fdp.name), "test-affine")


def run(schema: Schema, text: str, bottoms, blobs=()):
    layer = text_format.Parse(text, schema.message_class("LayerParameter")())
    layer.name = layer.name or "probe"
    layer.bottom.extend(f"b{i}" for i in range(len(bottoms)))
    layer.top.append("t0")
    op = op_for(layer, [np.asarray(b, F32) for b in blobs], Phase.TEST)
    out = op.run([np.asarray(b, F32) for b in bottoms])
    assert all(t.dtype == F32 for t in out)
    return out


# ---------------------------------------------------------------- Axpy


def axpy_loop(scale, x, y):
    top = y.reshape(-1).copy()
    flat_x, flat_a = x.reshape(-1), scale.reshape(-1)
    spatial = int(np.prod(x.shape[2:]))
    for offset in range(x.shape[0] * x.shape[1]):
        for i in range(spatial):
            top[offset * spatial + i] = F32(flat_a[offset] * flat_x[offset * spatial + i]
                                            + top[offset * spatial + i])
    return top.reshape(x.shape)


@pytest.mark.parametrize("scale_shape", [(2, 3, 1, 1), (2, 3)])
def test_axpy_is_a_per_channel_scale_plus_y(scale_shape):
    rng = np.random.default_rng(1)
    scale = rng.uniform(-2, 2, scale_shape).astype(F32)
    x, y = (rng.uniform(-2, 2, (2, 3, 4, 5)).astype(F32) for _ in range(2))
    (got,) = run(default_schema(), 'type: "Axpy"', [scale, x, y])
    np.testing.assert_allclose(got, axpy_loop(scale, x, y), rtol=0, atol=1e-6)


def test_axpy_checks_the_shapes_its_reshape_checks():
    ones = np.ones((2, 3, 4, 4), F32)
    with pytest.raises(ForwardError, match=r"\(Axpy\).*\(N, C, 1, 1\)"):
        run(default_schema(), 'type: "Axpy"', [np.ones((2, 3, 2, 1), F32), ones, ones])
    with pytest.raises(ForwardError, match="same shape"):
        run(default_schema(), 'type: "Axpy"', [np.ones((2, 3), F32), ones, ones[:, :, :2]])


# ---------------------------------------------------------------- ConvolutionDepthwise


def depthwise_loop(x, weights, bias, kernel, stride, pad, dilation):
    num, channels, height, width = x.shape
    out_h = (height + 2 * pad[0] - (dilation[0] * (kernel[0] - 1) + 1)) // stride[0] + 1
    out_w = (width + 2 * pad[1] - (dilation[1] * (kernel[1] - 1) + 1)) // stride[1] + 1
    top = np.zeros((num, channels, out_h, out_w), F32)
    for n in range(num):
        for c in range(channels):
            for h in range(out_h):
                for w in range(out_w):
                    value = F32(0)
                    for kh in range(kernel[0]):
                        for kw in range(kernel[1]):
                            h_in = -pad[0] + h * stride[0] + kh * dilation[0]
                            w_in = -pad[1] + w * stride[1] + kw * dilation[1]
                            if 0 <= h_in < height and 0 <= w_in < width:
                                value = F32(value + weights[c, 0, kh, kw] * x[n, c, h_in, w_in])
                    top[n, c, h, w] = value
    if bias is not None:
        top += bias.reshape(1, -1, 1, 1)
    return top


@pytest.mark.parametrize("param,kernel,stride,pad,dilation,bias", [
    ("kernel_size: 3 stride: 1 pad: 1 bias_term: false", (3, 3), (1, 1), (1, 1), (1, 1), False),
    ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), (1, 1), True),
    ("kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 0 pad_w: 1 dilation: 2",
     (2, 3), (1, 2), (0, 1), (2, 2), True),
    ("kernel_size: 3 kernel_size: 1 stride: 2 stride: 1 pad: 1 pad: 0", (3, 1), (2, 1),
     (1, 0), (1, 1), True),
])
def test_convolution_depthwise_matches_its_loop(param, kernel, stride, pad, dilation, bias):
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, (2, 4, 7, 6)).astype(F32)
    weights = rng.uniform(-1, 1, (4, 1) + kernel).astype(F32)
    blobs = [weights] + ([rng.uniform(-1, 1, 4).astype(F32)] if bias else [])
    # num_output does not count: the fork's top keeps the bottom's channels.
    (got,) = run(default_schema(), f'type: "ConvolutionDepthwise" convolution_param '
                                   f'{{ num_output: 99 {param} }}', [x], blobs)
    reference = depthwise_loop(x, weights, blobs[1] if bias else None, kernel, stride, pad,
                               dilation)
    np.testing.assert_allclose(got, reference, rtol=0, atol=2e-6)


# ---------------------------------------------------------------- EltwiseAffine


def affine_loop(x, slope, bias, shared):
    flat = x.reshape(-1)
    dim, channels = int(np.prod(x.shape[2:])), x.shape[1]
    div = channels if shared else 1
    top = np.empty_like(flat)
    for i in range(flat.size):
        c = (i // dim) % channels // div
        top[i] = F32(flat[i] * slope.reshape(-1)[c] + bias.reshape(-1)[c])
    return top.reshape(x.shape)


@pytest.mark.parametrize("shared,x_shape", [(False, (2, 3, 4, 2)), (True, (2, 3, 4, 2)),
                                            (False, (5, 3))])
def test_eltwise_affine_matches_its_loop(shared, x_shape):
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, x_shape).astype(F32)
    blob_shape = () if shared else (x_shape[1],)
    slope, bias = (rng.uniform(-2, 2, blob_shape).astype(F32) for _ in range(2))
    text = f'type: "EltwiseAffine" eltwise_affine_param {{ channel_shared: {str(shared).lower()} }}'
    (got,) = run(affine_schema(), text, [x], [slope, bias])
    np.testing.assert_allclose(got, affine_loop(x, slope, bias, shared), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- ROIPooling


def c_round(value: float) -> int:
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def roi_pooling_loop(data, rois, pooled_h, pooled_w, scale):
    num_rois, (_, channels, height, width) = rois.shape[0], data.shape
    top = np.full((num_rois, channels, pooled_h, pooled_w), -FLT_MAX, F32)
    for n in range(num_rois):
        batch = int(rois[n, 0])
        start_w, start_h, end_w, end_h = (c_round(float(F32(v) * F32(scale)))
                                          for v in rois[n, 1:])
        roi_h, roi_w = max(end_h - start_h + 1, 1), max(end_w - start_w + 1, 1)
        bin_h, bin_w = F32(roi_h) / F32(pooled_h), F32(roi_w) / F32(pooled_w)
        for c in range(channels):
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    hstart = min(max(int(math.floor(F32(ph) * bin_h)) + start_h, 0), height)
                    hend = min(max(int(math.ceil(F32(ph + 1) * bin_h)) + start_h, 0), height)
                    wstart = min(max(int(math.floor(F32(pw) * bin_w)) + start_w, 0), width)
                    wend = min(max(int(math.ceil(F32(pw + 1) * bin_w)) + start_w, 0), width)
                    if hend <= hstart or wend <= wstart:
                        top[n, c, ph, pw] = 0
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if data[batch, c, h, w] > top[n, c, ph, pw]:
                                top[n, c, ph, pw] = data[batch, c, h, w]
    return top


ROIS = np.array([[0, 0, 0, 63, 47],        # the whole image at scale 1/16 (4 x 3 map)
                 [1, 17.5, 8.4, 40.2, 30],    # rounding of scaled corners
                 [0, 200, 200, 260, 270],     # entirely outside: empty bins give 0
                 [1, 30, 20, 10, 5],          # x2 < x1: forced to 1 x 1
                 [1, -40, -40, 24, 24]], F32)  # partly outside: clipped


def test_roi_pooling_matches_fast_rcnns_loop():
    rng = np.random.default_rng(5)
    data = rng.uniform(-2, 2, (2, 3, 5, 6)).astype(F32)
    text = ('type: "ROIPooling" roi_pooling_param { pooled_h: 2 pooled_w: 3 '
            'spatial_scale: 0.0625 }')
    schema = get_dialect("frcnn").schema()
    (got,) = run(schema, text, [data, ROIS])
    np.testing.assert_array_equal(got, roi_pooling_loop(data, ROIS, 2, 3, 0.0625))
    assert np.all(got[2] == 0)
    (four_d,) = run(schema, text, [data, ROIS.reshape(5, 5, 1, 1)])
    np.testing.assert_array_equal(four_d, got)
    with pytest.raises(ForwardError, match="ROI 0 has batch index 2"):
        run(schema, text, [data, np.array([[2, 0, 0, 1, 1]], F32)])


# ---------------------------------------------------------------- PSROIPooling


def psroi_pooling_loop(data, rois, output_dim, group, scale):
    num_rois, (_, channels, height, width) = rois.shape[0], data.shape
    top = np.zeros((num_rois, output_dim, group, group), F32)
    scale = F32(scale)
    for n in range(num_rois):
        batch = int(rois[n, 0])
        start_w = F32(c_round(float(rois[n, 1]))) * scale
        start_h = F32(c_round(float(rois[n, 2]))) * scale
        end_w = F32(c_round(float(rois[n, 3])) + 1.0) * scale
        end_h = F32(c_round(float(rois[n, 4])) + 1.0) * scale
        roi_w, roi_h = F32(max(end_w - start_w, 0.1)), F32(max(end_h - start_h, 0.1))
        bin_h, bin_w = roi_h / F32(group), roi_w / F32(group)
        for ctop in range(output_dim):
            for ph in range(group):
                for pw in range(group):
                    hstart = min(max(math.floor(F32(ph) * bin_h + start_h), 0), height)
                    wstart = min(max(math.floor(F32(pw) * bin_w + start_w), 0), width)
                    hend = min(max(math.ceil(F32(ph + 1) * bin_h + start_h), 0), height)
                    wend = min(max(math.ceil(F32(pw + 1) * bin_w + start_w), 0), width)
                    c = (ctop * group + ph) * group + pw
                    total = F32(0)
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            total = F32(total + data[batch, c, h, w])
                    area = F32((hend - hstart) * (wend - wstart))
                    empty = hend <= hstart or wend <= wstart
                    top[n, ctop, ph, pw] = 0 if empty else total / area
    return top


def test_psroi_pooling_matches_r_fcns_kernel():
    rng = np.random.default_rng(6)
    output_dim, group = 2, 3
    data = rng.uniform(-2, 2, (2, output_dim * group * group, 6, 7)).astype(F32)
    text = ('type: "PSROIPooling" psroi_pooling_param { spatial_scale: 0.0625 '
            f'output_dim: {output_dim} group_size: {group} }}')
    schema = get_dialect("frcnn").schema()
    (got,) = run(schema, text, [data, ROIS])
    np.testing.assert_allclose(got, psroi_pooling_loop(data, ROIS, output_dim, group, 0.0625),
                               rtol=0, atol=1e-6)
    assert np.all(got[2] == 0)
    with pytest.raises(ForwardError, match="input channel number 18 does not match"):
        run(schema, text.replace("output_dim: 2", "output_dim: 3"), [data, ROIS])
