"""Data layers: where a net's blobs come from (Input, the readers, DummyData).

A reader's top shape mostly comes from its dataset (`DataDependentShapeError`); the
deploy net replaces every reader by one Input layer.
"""

from __future__ import annotations

from bnlint.caffe import forks
from bnlint.caffe.layers.base import (
    DataDependentShapeError,
    LayerShapes,
    Shape,
    blob_shape,
    count,
    expect_bottoms,
    declared_tops,
    fork_field,
    fork_param,
)
from bnlint.caffe.layers.table import (
    DATA,
    ROLE_DATA,
    declare,
    shape_rule,
)
from bnlint.errors import ShapeError

declare("Input", DATA, param="input_param", doc="the net's input blobs, shapes given")
declare("DummyData", DATA, param="dummy_data_param", roles=[ROLE_DATA],
        doc="constant or filler-made blobs of given shapes")
declare("MemoryData", DATA, param="memory_data_param", roles=[ROLE_DATA],
        doc="batches handed over from code")
declare("ImageData", DATA, param="image_data_param", roles=[ROLE_DATA],
        doc="images listed in a text file")
declare("Data", DATA, param="data_param", roles=[ROLE_DATA], doc="an LMDB/LevelDB dataset")
declare("HDF5Data", DATA, param="hdf5_data_param", roles=[ROLE_DATA], doc="HDF5 files")
declare("WindowData", DATA, param="window_data_param", roles=[ROLE_DATA],
        doc="windows of images (R-CNN)")
declare("AnnotatedData", DATA, dialect=forks.SSD, param="annotated_data_param",
        roles=[ROLE_DATA], doc="images with boxes (SSD)")
declare("VideoData", DATA, dialect=forks.SSD, param="video_data_param", roles=[ROLE_DATA],
        doc="frames of a video or webcam (SSD)")
declare("DenseImageData", DATA, dialect=forks.SEGNET, param="dense_image_data_param",
        roles=[ROLE_DATA], doc="images with per-pixel labels (SegNet)")
declare("HDF5Output", DATA, param="hdf5_output_param", doc="writes its bottoms to HDF5")


# ---------------------------------------------------------------- inputs and data


@shape_rule("Input")
def _input(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 0)
    given = layer.input_param.shape
    num_tops = len(layer.top)
    if len(given) == 0:
        raise ShapeError("input_param has no shape")
    if len(given) not in (1, num_tops):
        raise ShapeError(f"input_param gives {len(given)} shapes for {num_tops} tops; "
                         "give one shape, or one per top")
    return LayerShapes(tops=[
        blob_shape(given[0 if len(given) == 1 else i], "input shape")
        for i in range(num_tops)])


@shape_rule("DummyData")
def _dummy_data(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 0)
    param = layer.dummy_data_param
    num_tops = len(layer.top)
    legacy = (param.num, param.channels, param.height, param.width)
    if any(len(values) for values in legacy):
        if len(param.shape):
            raise ShapeError("dummy_data_param gives both shape and num/channels/height/width")
        for name, values in zip(("num", "channels", "height", "width"), legacy):
            if len(values) not in (1, num_tops):
                raise ShapeError(f"dummy_data_param '{name}' must be given once or once "
                                 f"per top ({num_tops}), got {len(values)}")
        return LayerShapes(tops=[
            tuple(int(values[0 if len(values) == 1 else i]) for values in legacy)
            for i in range(num_tops)])
    if len(param.shape) not in (1, num_tops):
        raise ShapeError(f"dummy_data_param gives {len(param.shape)} shapes for "
                         f"{num_tops} tops")
    return LayerShapes(tops=[
        blob_shape(param.shape[0 if len(param.shape) == 1 else i], "dummy data shape")
        for i in range(num_tops)])


@shape_rule("MemoryData")
def _memory_data(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 0)
    param = layer.memory_data_param
    data = (param.batch_size, param.channels, param.height, param.width)
    if count(data) <= 0:
        raise ShapeError("memory_data_param batch_size, channels, height and width "
                         "must all be positive")
    tops = [data, (param.batch_size,)]
    return LayerShapes(tops=tops[:declared_tops(layer)])


@shape_rule("ImageData")
def _image_data(layer, bottoms: list[Shape]) -> LayerShapes:
    expect_bottoms(bottoms, 0)
    param = layer.image_data_param
    crop = layer.transform_param.crop_size
    if crop > 0:
        height = width = crop
    elif param.new_height > 0 and param.new_width > 0:
        height, width = param.new_height, param.new_width
    else:
        raise DataDependentShapeError(
            "ImageData's height and width come from the first image (set "
            "transform_param.crop_size or new_height/new_width to fix them)")
    batch = param.batch_size
    tops = [(batch, 3 if param.is_color else 1, height, width), (batch,)]
    return LayerShapes(tops=tops[:declared_tops(layer)])


@shape_rule("DenseImageData")
def _dense_image_data(layer, bottoms: list[Shape]) -> LayerShapes:
    """SegNet's dense_image_data_layer.cpp: images and per-pixel label images, cropped to
    transform_param.crop_size, else to crop_height x crop_width, else the first image's
    size after the optional resize to new_height x new_width (unknowable without one)."""
    expect_bottoms(bottoms, 0)
    param = fork_param(layer, "dense_image_data_param")
    crop = layer.transform_param.crop_size
    crop_hw = (fork_field(param, "crop_height", 0), fork_field(param, "crop_width", 0))
    new_hw = (fork_field(param, "new_height", 0), fork_field(param, "new_width", 0))
    for what, pair in (("crop_height and crop_width", crop_hw),
                       ("new_height and new_width", new_hw)):
        if (pair[0] > 0) != (pair[1] > 0):
            raise ShapeError(f"{what} must be set together")
    if crop > 0:
        height = width = crop
    elif crop_hw[0] > 0:
        height, width = crop_hw
    elif new_hw[0] > 0:
        height, width = new_hw
    else:
        raise DataDependentShapeError(
            "DenseImageData's height and width come from the first image (set "
            "new_height/new_width or crop_height/crop_width to fix them)")
    batch = fork_field(param, "batch_size", 0)
    channels = 3 if fork_field(param, "is_color", True) else 1
    tops = [(batch, channels, height, width), (batch, 1, height, width)]
    return LayerShapes(tops=tops[:declared_tops(layer)])


@shape_rule("Data", "HDF5Data", "WindowData", "AnnotatedData", "VideoData")
def _dataset(layer, bottoms: list[Shape]) -> LayerShapes:
    raise DataDependentShapeError(f"{layer.type}'s top shapes come from the dataset")

