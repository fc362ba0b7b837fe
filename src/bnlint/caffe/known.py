"""Facts about which layer types and fields exist where: BVLC Caffe and its forks.

Used to tell a fork net from a broken one: an unknown field that a known fork
defines gets "looks like the SSD fork" instead of a bare "unknown field". The
bundled dialects (caffe/dialects.py) hold the forks' full schemas; this table
names the forks in messages, including forks bnlint has no schema for.
"""

from __future__ import annotations

from bnlint.caffe.forks import (  # noqa: F401 - fork names, also used via known.X
    CEIL,
    FRCNN,
    INTEL,
    INTERP,
    NVCAFFE,
    PROPOSAL,
    RELU6,
    SEGNET,
    SHUFFLE,
    SSD,
)
from bnlint.caffe.layers import ROLE_PARAMETRIC, TABLE, batchnorm, types_with

# Every layer type BVLC Caffe (last master) registers (src/caffe/layers/*).
BVLC_LAYER_TYPES = frozenset(name for name, entry in TABLE.items() if entry.dialect is None)

# Layer types that own parameter blobs (BVLC's, and forks' that bnlint knows): what
# "has weights" means for duplicate names (N004) and for missing weights (to-deploy).
PARAMETRIC_LAYER_TYPES = types_with(ROLE_PARAMETRIC)

# Fork layer type -> the fork that defines it.
FORK_LAYER_TYPES: dict[str, str] = {
    name: entry.dialect for name, entry in TABLE.items() if entry.dialect is not None}

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
    **{("BatchNormParameter", f): NVCAFFE for f in batchnorm.NVCAFFE_FIELDS},
    **{("LayerParameter", f): NVCAFFE for f in batchnorm.NVCAFFE_LAYER_FIELDS},
    **{("BatchNormParameter", f): INTEL for f in batchnorm.INTEL_FIELDS},
    ("LayerParameter", "interp_param"): INTERP,
    ("LayerParameter", "relu6_param"): RELU6,
}

def fork_of_field(container: str, field: str) -> str | None:
    """`container` may be a full name ("caffe.LayerParameter") or a short one."""
    return FORK_FIELDS.get((container.rsplit(".", 1)[-1], field))
