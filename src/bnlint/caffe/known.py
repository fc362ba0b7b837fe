"""Facts about which layer types and fields exist where: BVLC Caffe and its forks.

Used to tell a fork net from a broken one: an unknown field that a known fork
defines gets "looks like the SSD fork" instead of a bare "unknown field". The
bundled dialects (caffe/dialects.py) hold the forks' full schemas; this table
names the forks in messages, including forks bnlint has no schema for.
"""

from __future__ import annotations

# Every layer type BVLC Caffe (last master) registers (src/caffe/layers/*).
BVLC_LAYER_TYPES = frozenset({
    "AbsVal", "Accuracy", "ArgMax", "BatchNorm", "BatchReindex", "Bias", "BNLL", "Clip",
    "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout",
    "DummyData", "Eltwise", "ELU", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten",
    "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData", "InfogainLoss",
    "InnerProduct", "Input", "Log", "LRN", "LSTM", "LSTMUnit", "MemoryData",
    "MultinomialLogisticLoss", "MVN", "Parameter", "Pooling", "Power", "PReLU", "Python",
    "Recurrent", "Reduction", "ReLU", "Reshape", "RNN", "Scale", "Sigmoid",
    "SigmoidCrossEntropyLoss", "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split",
    "SPP", "Swish", "TanH", "Threshold", "Tile", "WindowData",
})

# Layer types that own parameter blobs (BVLC's, and forks' that bnlint knows): what
# "has weights" means for duplicate names (N004) and for missing weights (to-deploy).
PARAMETRIC_LAYER_TYPES = frozenset({
    "Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "PReLU",
    "Embed", "LSTM", "RNN", "Recurrent", "Parameter", "ConvolutionDepthwise",
    "DepthwiseConvolution", "Normalize", "BN",
})

SSD = "the SSD fork (weiliu89/caffe)"
CEIL = "a ceil-mode pooling fork (e.g. shicai's DenseNet, soeaver's caffe-model)"
SEGNET = "the SegNet/ENet fork (alexgkendall/caffe-segnet)"
SHUFFLE = "a ShuffleNet fork (ShuffleChannel layer)"
FRCNN = "py-faster-rcnn / R-FCN's fork"
NVCAFFE = "NVIDIA Caffe (NVCaffe)"
INTEL = "Intel Caffe"
INTERP = "a PSPNet/DeepLab fork (Interp layer)"
PROPOSAL = "a Faster R-CNN fork with a C++ Proposal layer"

# (message type, field name) -> fork
FORK_FIELDS: dict[tuple[str, str], str] = {
    **{("LayerParameter", f): SSD for f in (
        "annotated_data_param", "detection_evaluate_param", "detection_output_param",
        "multibox_loss_param", "norm_param", "permute_param", "prior_box_param",
        "video_data_param")},
    **{("TransformationParameter", f): SSD for f in (
        "resize_param", "noise_param", "distort_param", "expand_param", "emit_constraint",
        "force_color", "force_gray")},
    **{("SolverParameter", f): SSD for f in (
        "eval_type", "ap_version", "show_per_class_result", "plateau_winsize")},
    **{("TransformationParameter", f): SSD for f in ("crop_h", "crop_w")},
    ("FlattenParameter", "axis"): SSD,
    ("PoolingParameter", "ceil_mode"): CEIL,
    ("LayerParameter", "bn_param"): SEGNET,
    ("LayerParameter", "dense_image_data_param"): SEGNET,
    ("LayerParameter", "upsample_param"): SEGNET,
    ("BNParameter", "bn_mode"): SEGNET,
    ("DropoutParameter", "sample_weights_test"): SEGNET,
    ("LossParameter", "weight_by_label_freqs"): SEGNET,
    ("LossParameter", "class_weighting"): SEGNET,
    ("LayerParameter", "shuffle_channel_param"): SHUFFLE,
    **{("LayerParameter", f): FRCNN for f in (
        "roi_pooling_param", "psroi_pooling_param", "smooth_l1_loss_param",
        "box_annotator_ohem_param")},
    ("LossParameter", "pre_fixed_normalizer"): FRCNN,
    ("LayerParameter", "proposal_param"): PROPOSAL,
    **{("BatchNormParameter", f): NVCAFFE for f in (
        "scale_bias", "scale_filler", "bias_filler", "engine")},
    **{("LayerParameter", f): NVCAFFE for f in (
        "forward_type", "backward_type", "forward_math", "backward_math")},
    ("BatchNormParameter", "use_weight_bias"): INTEL,
    ("BatchNormParameter", "bias_term"): INTEL,
    ("LayerParameter", "interp_param"): INTERP,
    ("LayerParameter", "relu6_param"): "a fork with a ReLU6 layer",
}

FORK_LAYER_TYPES: dict[str, str] = {
    **dict.fromkeys(("Permute", "PriorBox", "DetectionOutput", "DetectionEvaluate",
                     "MultiBoxLoss", "Normalize", "AnnotatedData", "VideoData"), SSD),
    **dict.fromkeys(("BN", "Upsample", "DenseImageData"), SEGNET),
    "ShuffleChannel": SHUFFLE,
    **dict.fromkeys(("ROIPooling", "PSROIPooling", "SmoothL1Loss", "BoxAnnotatorOHEM",
                     "SmoothL1LossOHEM", "SoftmaxWithLossOHEM"), FRCNN),
    "Proposal": PROPOSAL,
    "Interp": INTERP,
    "ReLU6": "a fork with a ReLU6 layer",
    "DepthwiseConvolution": "a fork with a DepthwiseConvolution layer",
    "ConvolutionDepthwise": "a fork with a ConvolutionDepthwise layer",
    "EltwiseAffine": "a fork with an EltwiseAffine layer",
    "Axpy": "SENet's fork (Axpy layer)",
}


def fork_of_field(container: str, field: str) -> str | None:
    """`container` may be a full name ("caffe.LayerParameter") or a short one."""
    return FORK_FIELDS.get((container.rsplit(".", 1)[-1], field))
