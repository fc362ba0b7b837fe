"""Caffe's load-time upgrades of old nets and solvers, as passes over messages.

BVLC Caffe never runs an old-syntax net as written: `UpgradeNetAsNeeded`
(src/caffe/util/upgrade_proto.cpp) rewrites every net it reads from a file, in a
fixed order, and each step runs only when its predicate says so:

1. V0 -> V1 (`needs_v0_upgrade`): `layers { layer { type: "conv" ... } }`, with
   "padding" layers folded into the conv/pool layer they feed.
2. Data transformation (`needs_data_upgrade`): scale / mean_file / crop_size / mirror
   of V1 Data, ImageData and WindowData layers move into `transform_param`.
3. V1 -> V2 (`needs_v1_upgrade`): enum-typed `layers` become string-typed `layer`,
   blobs_lr / weight_decay / param / blob_share_mode become `param` blocks.
4. Net inputs (`needs_input_upgrade`): net-level input / input_shape / input_dim
   become one Input layer named "input", placed first.
5. BatchNorm (`needs_batch_norm_upgrade`): a BatchNorm with exactly three `param`
   blocks gets lr_mult 0 and decay_mult 0 in each, whatever the file says.

The linter reasons about what Caffe runs, so it lints the upgraded net and shows the
notes: each says what a step rewrote, or what Caffe silently dropped on the way.
Where Caffe aborts (LOG(FATAL) / CHECK) or would read past the end of a list, this
module raises `BnlintError` instead.

Message classes are taken from the input message's own descriptors, never from a
fixed `caffe_pb2`, so a fork's schema works as long as it keeps BVLC's legacy fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor

from bnlint.errors import BnlintError

# Step names, in Caffe's order; `UpgradeResult.steps` lists those that changed something.
STEP_V0 = "v0-to-v1"
STEP_DATA = "data-transformation"
STEP_V1 = "v1-to-v2"
STEP_INPUT = "input-layer"
STEP_BATCH_NORM = "batch-norm-params"
STEP_SOLVER_TYPE = "solver-type"

INPUT_LAYER_NAME = "input"

# UpgradeV1LayerType: V1LayerParameter.LayerType enum name -> the layer's type string.
V1_LAYER_TYPES: dict[str, str] = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# UpgradeV0LayerType: a V0 layer's lower-case type -> V1 LayerType enum name.
# "padding" is absent on purpose: padding layers are folded away before this lookup.
V0_LAYER_TYPES: dict[str, str] = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# UpgradeSolverType: SolverParameter.SolverType enum name -> the solver's type string.
SOLVER_TYPES: dict[str, str] = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

_ANY_TYPE = "*"

# UpgradeV0LayerParameter: V0 field -> {V0 type (or _ANY_TYPE) -> "param_field.field"}.
# A V0 field set on a layer type missing from its row is dropped by Caffe ("Unknown
# parameter ... for layer type ..."). Conv pad/kernel/stride are repeated in V1, pooling's
# are not; `_copy_field` appends or sets accordingly.
_V0_FIELDS: dict[str, dict[str, str]] = {
    "num_output": {"conv": "convolution_param.num_output",
                   "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term",
                 "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler",
                      "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler",
                    "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size", "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {"data": "data_param.source", "hdf5_data": "hdf5_data_param.source",
               "images": "image_data_param.source", "window_data": "window_data_param.source",
               "infogain_loss": "infogain_loss_param.source"},
    "scale": {_ANY_TYPE: "transform_param.scale"},
    "meanfile": {_ANY_TYPE: "transform_param.mean_file"},
    "batchsize": {"data": "data_param.batch_size", "hdf5_data": "hdf5_data_param.batch_size",
                  "images": "image_data_param.batch_size",
                  "window_data": "window_data_param.batch_size"},
    "cropsize": {_ANY_TYPE: "transform_param.crop_size"},
    "mirror": {_ANY_TYPE: "transform_param.mirror"},
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}
# V0 fields copied outside the table; any other field missing from it (new_num,
# new_channels) is never read by Caffe.
_V0_HANDLED = {"name", "type", "blobs", "blobs_lr", "weight_decay"}

# V0 -> V1 keeps only these net-level fields (UpgradeV0Net builds a fresh NetParameter).
_V0_NET_KEPT = ("name", "input", "input_dim", "force_backward")

# NetNeedsDataUpgrade / UpgradeNetDataTransformation: V1 type -> its data parameter.
_DATA_LAYER_PARAMS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                      "WINDOW_DATA": "window_data_param"}
_LEGACY_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


@dataclass
class UpgradeResult:
    """The upgraded message (a new one; the input is untouched) and what was done.

    `notes` are for people; `steps` (STEP_* names, Caffe's order) lists the steps that
    changed the message, for code that only needs to know whether the file was old.
    """

    message: object
    notes: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    @property
    def net(self):
        """The upgraded NetParameter (for `upgrade_net`)."""
        return self.message

    @property
    def changed(self) -> bool:
        return bool(self.steps)


# --- predicates (Caffe's NetNeeds*Upgrade) -------------------------------------------

def needs_v0_upgrade(net) -> bool:
    """NetNeedsV0ToV1Upgrade: some `layers` entry wraps a V0 `layer` block."""
    return any(conn.HasField("layer") for conn in net.layers)


def needs_data_upgrade(net) -> bool:
    """NetNeedsDataUpgrade: a V1 data layer sets a transformation field in its own param.

    Only V1 `layers` are looked at: in a current `layer`, data_param.scale and friends
    are never moved, and Caffe's data layers do not read them.
    """
    for layer in net.layers:
        param_name = _DATA_LAYER_PARAMS.get(_enum_name(layer, "type"))
        if param_name and _legacy_transform_fields(getattr(layer, param_name)):
            return True
    return False


def needs_v1_upgrade(net) -> bool:
    """NetNeedsV1ToV2Upgrade: any `layers` entry at all."""
    return len(net.layers) > 0


def needs_input_upgrade(net) -> bool:
    """NetNeedsInputUpgrade: any net-level `input`."""
    return len(net.input) > 0


def needs_batch_norm_upgrade(net) -> bool:
    """NetNeedsBatchNormUpgrade: a BatchNorm `layer` with exactly three `param` blocks.

    True even when the blocks already say lr_mult 0: Caffe keys on the count only.
    """
    return any(_is_three_param_batch_norm(layer) for layer in net.layer)


def needs_upgrade(net) -> bool:
    """Whether Caffe would run any upgrade step on this net."""
    return (needs_v0_upgrade(net) or needs_data_upgrade(net) or needs_v1_upgrade(net)
            or needs_input_upgrade(net) or needs_batch_norm_upgrade(net))


def needs_solver_upgrade(solver) -> bool:
    """SolverNeedsTypeUpgrade: the enum `solver_type` is written."""
    return "solver_type" in solver.DESCRIPTOR.fields_by_name and solver.HasField("solver_type")


# --- the whole net ---------------------------------------------------------------------

def upgrade_net(net) -> UpgradeResult:
    """Every step of Caffe's UpgradeNetAsNeeded that applies, in Caffe's order."""
    upgraded = type(net)()
    upgraded.CopyFrom(net)
    result = UpgradeResult(upgraded)
    steps = (
        (STEP_V0, needs_v0_upgrade, _upgrade_v0_net),
        (STEP_DATA, needs_data_upgrade, _upgrade_data_transformation),
        (STEP_V1, needs_v1_upgrade, _upgrade_v1_net),
        (STEP_INPUT, needs_input_upgrade, _upgrade_input),
        (STEP_BATCH_NORM, needs_batch_norm_upgrade, _upgrade_batch_norm),
    )
    for name, needed, run in steps:
        if needed(upgraded) and run(upgraded, result.notes):
            result.steps.append(name)
    return result


# --- V0 -> V1 ------------------------------------------------------------------------

def _upgrade_v0_net(net, notes: list[str]) -> bool:
    """UpgradeV0Net: fold padding layers, then turn each V0 layer into a V1 layer."""
    details: list[str] = []
    connections = _fold_v0_padding(net, details)
    dropped = [fd.name for fd, _ in net.ListFields()
               if fd.name not in _V0_NET_KEPT and fd.name != "layers"]
    kept = {name: _field_value(net, name) for name in _V0_NET_KEPT if _is_set(net, name)}
    net.Clear()
    for name, value in kept.items():
        if isinstance(value, list):
            getattr(net, name).extend(value)
        else:
            setattr(net, name, value)
    for index, connection in connections:
        _fill_v1_from_v0(connection, net.layers.add(), index, details)
    notes.append(f"V0 'layers {{ layer {{ ... }} }}' → V1 'layers' ({len(connections)} layers)")
    if dropped:
        notes.append(f"V0 upgrade dropped net-level {', '.join(dropped)}: Caffe keeps only "
                     f"{', '.join(_V0_NET_KEPT)} from a V0 net")
    notes.extend(details)
    return True


def _fold_v0_padding(net, notes: list[str]) -> list:
    """UpgradeV0PaddingLayers: drop each "padding" layer, moving its pad into its consumer.

    Returns (index in the file, copy) for each V0 connection that remains; the net is
    not changed.
    """
    last_producer: dict[str, int | None] = {name: None for name in net.input}  # None: net input
    kept = []
    for index, connection in enumerate(net.layers):
        v0 = connection.layer
        if v0.type != "padding":
            copy = type(connection)()
            copy.CopyFrom(connection)
            kept.append((index, copy))
        for bottom_index, blob in enumerate(connection.bottom):
            if blob not in last_producer:
                raise BnlintError(f"V0 layer {_v0_label(connection, index)}: bottom {blob!r} is "
                                  f"neither a net input nor a top of an earlier layer")
            source_index = last_producer[blob]
            if source_index is None:
                continue
            source = net.layers[source_index]
            if source.layer.type != "padding":
                continue
            label = _v0_label(connection, index)
            source_label = _v0_label(source, source_index)
            if v0.type not in ("conv", "pool"):
                raise BnlintError(f"V0 padding layer {source_label} feeds layer {label} of type "
                                  f"{v0.type!r}; Caffe can fold padding only into conv or pool")
            if len(connection.bottom) != 1:
                raise BnlintError(f"V0 layer {label} is fed by padding layer {source_label} "
                                  f"but has {len(connection.bottom)} bottoms; Caffe needs one")
            if len(source.bottom) != 1 or len(source.top) != 1:
                raise BnlintError(f"V0 padding layer {source_label} must have one bottom and one "
                                  f"top (has {len(source.bottom)} and {len(source.top)})")
            target = kept[-1][1]
            target.layer.pad = source.layer.pad
            target.bottom[bottom_index] = source.bottom[0]
            notes.append(f"V0 padding layer {source_label} folded into {v0.type} layer {label} "
                         f"(pad {source.layer.pad})")
        for blob in connection.top:
            last_producer[blob] = index
    return kept


def _fill_v1_from_v0(connection, layer, index: int, notes: list[str]) -> None:
    """UpgradeV0LayerParameter: one V0 connection into an empty V1LayerParameter."""
    layer.bottom.extend(connection.bottom)
    layer.top.extend(connection.top)
    if not connection.HasField("layer"):
        lost = [fd.name for fd, _ in connection.ListFields() if fd.name not in ("bottom", "top")]
        if lost:
            notes.append(f"V1-style layer {_v0_label(connection, index)} in a V0 net: Caffe keeps "
                         f"only its bottom and top, dropping {', '.join(lost)}")
        return
    v0 = connection.layer
    label = _v0_label(connection, index)
    if v0.HasField("name"):
        layer.name = v0.name
    if v0.HasField("type"):
        enum_name = V0_LAYER_TYPES.get(v0.type)
        if enum_name is None:
            raise BnlintError(f"V0 layer {label}: unknown V0 layer type {v0.type!r}")
        layer.type = _enum_number(layer, "type", enum_name)
    layer.blobs.extend(v0.blobs)
    layer.blobs_lr.extend(v0.blobs_lr)
    layer.weight_decay.extend(v0.weight_decay)
    for fd, _ in v0.ListFields():
        if fd.name in _V0_HANDLED:
            continue
        targets = _V0_FIELDS.get(fd.name)
        if targets is None:
            notes.append(f"V0 layer {label}: Caffe never reads {fd.name}; dropped")
            continue
        target = targets.get(v0.type) or targets.get(_ANY_TYPE)
        if target is None:
            notes.append(f"V0 layer {label}: {fd.name} does not apply to type {v0.type!r}; "
                         f"Caffe drops it")
            continue
        _copy_field(v0, fd.name, layer, target, label)


# --- data transformation ---------------------------------------------------------------

def _upgrade_data_transformation(net, notes: list[str]) -> bool:
    """UpgradeNetDataTransformation: move V1 data layers' legacy fields to transform_param.

    A value already in transform_param is overwritten. Like Caffe (which calls
    mutable_*_param unconditionally), every V1 Data/ImageData/WindowData layer ends up
    with its data parameter and transform_param present, possibly empty.
    """
    for index, layer in enumerate(net.layers):
        param_name = _DATA_LAYER_PARAMS.get(_enum_name(layer, "type"))
        if param_name is None:
            continue
        param = getattr(layer, param_name)
        param.SetInParent()
        layer.transform_param.SetInParent()
        moved = _legacy_transform_fields(param)
        for name in moved:
            setattr(layer.transform_param, name, getattr(param, name))
            param.ClearField(name)
        if moved:
            notes.append(f"data layer {_label(layer.name, f'layers[{index}]')}: "
                         f"{param_name} {', '.join(moved)} → transform_param")
    return True


def _legacy_transform_fields(param) -> list[str]:
    fields = param.DESCRIPTOR.fields_by_name
    return [name for name in _LEGACY_TRANSFORM_FIELDS if name in fields and param.HasField(name)]


# --- V1 -> V2 ------------------------------------------------------------------------

def _upgrade_v1_net(net, notes: list[str]) -> bool:
    """UpgradeV1Net: `layers` (enum types) into `layer` (string types)."""
    if len(net.layer):
        raise BnlintError(
            "refusing to upgrade inconsistent NetParameter: it has both 'layer' and 'layers' "
            "entries (Caffe aborts here). The current format is layer { type: \"Layer\" ... }, "
            "not layers { type: LAYER ... }; switch the 'layers' entries to 'layer'.")
    details: list[str] = []
    v1_layers = list(net.layers)
    for v1_layer in v1_layers:
        _fill_layer_from_v1(v1_layer, net.layer.add(), details)
    net.ClearField("layers")
    notes.append(f"V1 'layers' → 'layer' ({len(v1_layers)} layers)")
    notes.extend(details)
    return True


def upgrade_v1_layer(v1_layer, notes: list[str] | None = None):
    """UpgradeV1LayerParameter: one V1LayerParameter as a new LayerParameter.

    Things Caffe drops on the way are appended to `notes` when given.
    """
    layer = _message_class(v1_layer, "LayerParameter")()
    _fill_layer_from_v1(v1_layer, layer, notes if notes is not None else [])
    return layer


def v1_layer_type(v1_layer) -> str:
    """The type string Caffe gives a V1 layer ("Convolution" for CONVOLUTION)."""
    enum_name = _enum_name(v1_layer, "type")
    if enum_name not in V1_LAYER_TYPES:
        shown = enum_name or f"number {v1_layer.type}"
        raise BnlintError(f"V1 layer {_label(v1_layer.name, '(unnamed)')}: unknown V1 layer "
                          f"type {shown}")
    return V1_LAYER_TYPES[enum_name]


def _fill_layer_from_v1(v1_layer, layer, notes: list[str]) -> None:
    label = _label(v1_layer.name, "(unnamed)")
    layer.bottom.extend(v1_layer.bottom)
    layer.top.extend(v1_layer.top)
    if v1_layer.HasField("name"):
        layer.name = v1_layer.name
    layer.include.extend(v1_layer.include)
    layer.exclude.extend(v1_layer.exclude)
    if v1_layer.HasField("type"):
        layer.type = v1_layer_type(v1_layer)
    layer.blobs.extend(v1_layer.blobs)
    # One ParamSpec per position of the longest of the four per-blob lists.
    count = max(len(v1_layer.param), len(v1_layer.blob_share_mode),
                len(v1_layer.blobs_lr), len(v1_layer.weight_decay))
    share_mode = v1_layer.DESCRIPTOR.fields_by_name["blob_share_mode"].enum_type
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1_layer.param):
            spec.name = v1_layer.param[i]
        if i < len(v1_layer.blob_share_mode):
            mode_name = share_mode.values_by_number[v1_layer.blob_share_mode[i]].name
            spec.share_mode = _enum_number(spec, "share_mode", mode_name)
        if i < len(v1_layer.blobs_lr):
            spec.lr_mult = v1_layer.blobs_lr[i]
        if i < len(v1_layer.weight_decay):
            spec.decay_mult = v1_layer.weight_decay[i]
    layer.loss_weight.extend(v1_layer.loss_weight)
    # Caffe copies each of V1's *_param messages by hand; that list is all of them.
    layer_fields = layer.DESCRIPTOR.fields_by_name
    for fd, value in v1_layer.ListFields():
        if not fd.name.endswith("_param") or fd.message_type is None:
            continue
        target = layer_fields.get(fd.name)
        if target is None or target.message_type.full_name != fd.message_type.full_name:
            notes.append(f"V1 layer {label}: {fd.name} has no place in the current layer "
                         f"format; dropped")
            continue
        getattr(layer, fd.name).CopyFrom(value)
    if v1_layer.HasField("layer"):
        notes.append(f"V1 layer {label} also holds a V0 'layer' block; Caffe ignores it")


# --- net inputs ----------------------------------------------------------------------

def _upgrade_input(net, notes: list[str]) -> bool:
    """UpgradeNetInput: net-level inputs into one Input layer "input", first in the net.

    input_shape wins over input_dim; input_dim is read in groups of four. An input with
    neither is only removed (that is how old .caffemodels list their inputs).
    """
    inputs = list(net.input)
    shapes = list(net.input_shape)
    dims = list(net.input_dim)
    shown = ", ".join(repr(name) for name in inputs)
    if shapes or dims:
        if shapes and len(shapes) < len(inputs):
            raise BnlintError(f"net has {len(inputs)} inputs ({shown}) but only {len(shapes)} "
                              f"input_shape entries; Caffe needs one per input")
        if not shapes and len(dims) < 4 * len(inputs):
            raise BnlintError(f"net has {len(inputs)} inputs ({shown}) but {len(dims)} input_dim "
                              f"values; Caffe reads four per input")
        layer = _message_class(net, "LayerParameter")()
        layer.name = INPUT_LAYER_NAME
        layer.type = "Input"
        layer.top.extend(inputs)
        for i in range(len(inputs)):
            shape = layer.input_param.shape.add()
            if shapes:
                shape.CopyFrom(shapes[i])
            else:
                shape.dim.extend(dims[4 * i:4 * i + 4])
        net.layer.insert(0, layer)
        source = "input_shape" if shapes else "input_dim"
        notes.append(f"net-level input fields → Input layer {INPUT_LAYER_NAME!r} at the front "
                     f"(tops {shown}; shapes from {source})")
        if shapes and dims:
            notes.append(f"input_dim ignored: input_shape takes precedence ({len(dims)} values "
                         f"dropped)")
        extra = len(shapes) - len(inputs) if shapes else len(dims) - 4 * len(inputs)
        if extra > 0:
            what = "input_shape entries" if shapes else "input_dim values"
            notes.append(f"{extra} extra {what} beyond the {len(inputs)} inputs ignored")
    else:
        notes.append(f"net-level input {shown} has no input_shape or input_dim: Caffe removes "
                     f"it without adding an Input layer")
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")
    return True


# --- BatchNorm -----------------------------------------------------------------------

def _upgrade_batch_norm(net, notes: list[str]) -> bool:
    """UpgradeNetBatchNorm: 3-param BatchNorm gets lr_mult 0 and decay_mult 0 (names kept).

    Returns whether anything changed: Caffe runs this on every such net, including
    ones that already say lr_mult 0 and decay_mult 0.
    """
    changed = False
    for index, layer in enumerate(net.layer):
        if not _is_three_param_batch_norm(layer):
            continue
        before = [(spec.HasField("lr_mult"), spec.lr_mult, spec.HasField("decay_mult"),
                   spec.decay_mult) for spec in layer.param]
        for spec in layer.param:
            spec.lr_mult = 0.0
            spec.decay_mult = 0.0
        if all(state == (True, 0.0, True, 0.0) for state in before):
            continue
        changed = True
        note = (f"BatchNorm {_label(layer.name, f'layer[{index}]')}: 3 param blocks → "
                f"lr_mult 0, decay_mult 0")
        learning = [f"{lr:g}" for _, lr, _, _ in before]
        if any(lr != 0.0 for _, lr, _, _ in before):
            note += f" (the file's lr_mult {', '.join(learning)} is overridden)"
        else:
            note += " (lr_mult was already 0; only decay_mult changes)"
        notes.append(note)
    return changed


def _is_three_param_batch_norm(layer) -> bool:
    return layer.type == "BatchNorm" and len(layer.param) == 3


# --- solvers -------------------------------------------------------------------------

def upgrade_solver(solver) -> UpgradeResult:
    """UpgradeSolverAsNeeded: the enum `solver_type` becomes the string `type`.

    Nets embedded in the solver (net_param, train_net_param, test_net_param) are left
    alone, as Caffe does: it upgrades nets only when it reads them from a file.
    """
    upgraded = type(solver)()
    upgraded.CopyFrom(solver)
    result = UpgradeResult(upgraded)
    if not needs_solver_upgrade(upgraded):
        return result
    if upgraded.HasField("type"):
        raise BnlintError("solver sets both the old solver_type (enum) and the new type "
                          "(string); Caffe refuses that, keep only type")
    enum_name = _enum_name(upgraded, "solver_type")
    if enum_name not in SOLVER_TYPES:
        raise BnlintError(f"unknown solver_type {enum_name or upgraded.solver_type}")
    upgraded.type = SOLVER_TYPES[enum_name]
    upgraded.ClearField("solver_type")
    result.notes.append(f"solver_type: {enum_name} → type: \"{upgraded.type}\"")
    result.steps.append(STEP_SOLVER_TYPE)
    return result


# --- helpers -------------------------------------------------------------------------

def _label(name: str, fallback: str) -> str:
    return repr(name) if name else fallback


def _v0_label(connection, index: int) -> str:
    return _label(connection.layer.name, f"layers[{index}]")


def _is_set(message, name: str) -> bool:
    fd = message.DESCRIPTOR.fields_by_name[name]
    return len(getattr(message, name)) > 0 if fd.is_repeated else message.HasField(name)


def _field_value(message, name: str):
    """A scalar, or a repeated field as a plain list (safe to keep across Clear())."""
    value = getattr(message, name)
    return list(value) if message.DESCRIPTOR.fields_by_name[name].is_repeated else value


def _enum_name(message, name: str) -> str | None:
    """The enum value's name ("DATA"), or None when the number has no name."""
    enum_type = message.DESCRIPTOR.fields_by_name[name].enum_type
    value = enum_type.values_by_number.get(getattr(message, name))
    return value.name if value is not None else None


def _enum_number(message, name: str, value_name: str) -> int:
    return message.DESCRIPTOR.fields_by_name[name].enum_type.values_by_name[value_name].number


def _message_class(message, short_name: str) -> type:
    """A sibling message class from the same schema file as `message`."""
    desc = message.DESCRIPTOR.file.message_types_by_name[short_name]
    return message_factory.GetMessageClass(desc)


def _copy_field(source, source_name: str, target, path: str, label: str) -> None:
    """Copy one V0 field to a dotted path in a V1 layer: set, append or merge by type."""
    *parents, leaf = path.split(".")
    for part in parents:
        target = getattr(target, part)
    value = getattr(source, source_name)
    fd = target.DESCRIPTOR.fields_by_name[leaf]
    if fd.type == FieldDescriptor.TYPE_ENUM:
        source_enum = source.DESCRIPTOR.fields_by_name[source_name].enum_type
        value = _enum_number(target, leaf, source_enum.values_by_number[value].name)
    try:
        if fd.message_type is not None:
            getattr(target, leaf).CopyFrom(value)
        elif fd.is_repeated:
            getattr(target, leaf).append(value)
        else:
            setattr(target, leaf, value)
    except (TypeError, ValueError) as err:
        raise BnlintError(f"V0 layer {label}: {source_name} {value!r} cannot become "
                          f"{path} ({err})") from None
