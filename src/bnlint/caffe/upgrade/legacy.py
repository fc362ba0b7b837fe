"""The upgrades of the legacy `layers` formats, Caffe's steps 1-3: V0 -> V1, the data
transformation fields, V1 -> V2."""

from __future__ import annotations

from bnlint.caffe.upgrade.fields import (copy_field, enum_number, enum_value_name, field_value,
                                         is_set, message_class, name_label, v0_label)
from bnlint.caffe.upgrade.names import (ANY_TYPE, DATA_LAYER_PARAMS, LEGACY_TRANSFORM_FIELDS,
                                        V0_FIELDS, V0_HANDLED, V0_LAYER_TYPES, V0_NET_KEPT,
                                        V1_LAYER_TYPES)
from bnlint.errors import BnlintError


# --- V0 -> V1 ------------------------------------------------------------------------

def upgrade_v0_net(net, notes: list[str]) -> bool:
    """UpgradeV0Net: fold padding layers, then turn each V0 layer into a V1 layer."""
    details: list[str] = []
    connections = _fold_v0_padding(net, details)
    dropped = [fd.name for fd, _ in net.ListFields()
               if fd.name not in V0_NET_KEPT and fd.name != "layers"]
    kept = {name: field_value(net, name) for name in V0_NET_KEPT if is_set(net, name)}
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
                     f"{', '.join(V0_NET_KEPT)} from a V0 net")
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
                raise BnlintError(f"V0 layer {v0_label(connection, index)}: bottom {blob!r} is "
                                  f"neither a net input nor a top of an earlier layer")
            source_index = last_producer[blob]
            if source_index is None:
                continue
            source = net.layers[source_index]
            if source.layer.type != "padding":
                continue
            label = v0_label(connection, index)
            source_label = v0_label(source, source_index)
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
            notes.append(f"V1-style layer {v0_label(connection, index)} in a V0 net: Caffe keeps "
                         f"only its bottom and top, dropping {', '.join(lost)}")
        return
    v0 = connection.layer
    label = v0_label(connection, index)
    if v0.HasField("name"):
        layer.name = v0.name
    if v0.HasField("type"):
        enum_name = V0_LAYER_TYPES.get(v0.type)
        if enum_name is None:
            raise BnlintError(f"V0 layer {label}: unknown V0 layer type {v0.type!r}")
        layer.type = enum_number(layer, "type", enum_name)
    layer.blobs.extend(v0.blobs)
    layer.blobs_lr.extend(v0.blobs_lr)
    layer.weight_decay.extend(v0.weight_decay)
    for fd, _ in v0.ListFields():
        if fd.name in V0_HANDLED:
            continue
        targets = V0_FIELDS.get(fd.name)
        if targets is None:
            notes.append(f"V0 layer {label}: Caffe never reads {fd.name}; dropped")
            continue
        target = targets.get(v0.type) or targets.get(ANY_TYPE)
        if target is None:
            notes.append(f"V0 layer {label}: {fd.name} does not apply to type {v0.type!r}; "
                         f"Caffe drops it")
            continue
        copy_field(v0, fd.name, layer, target, label)


# --- data transformation ---------------------------------------------------------------


def upgrade_data_transformation(net, notes: list[str]) -> bool:
    """UpgradeNetDataTransformation: move V1 data layers' legacy fields to transform_param.

    A value already in transform_param is overwritten. Like Caffe (which calls
    mutable_*_param unconditionally), every V1 Data/ImageData/WindowData layer ends up
    with its data parameter and transform_param present, possibly empty.
    """
    for index, layer in enumerate(net.layers):
        param_name = DATA_LAYER_PARAMS.get(enum_value_name(layer, "type"))
        if param_name is None:
            continue
        param = getattr(layer, param_name)
        param.SetInParent()
        layer.transform_param.SetInParent()
        moved = legacy_transform_fields(param)
        for name in moved:
            setattr(layer.transform_param, name, getattr(param, name))
            param.ClearField(name)
        if moved:
            notes.append(f"data layer {name_label(layer.name, f'layers[{index}]')}: "
                         f"{param_name} {', '.join(moved)} → transform_param")
    return True


def legacy_transform_fields(param) -> list[str]:
    fields = param.DESCRIPTOR.fields_by_name
    return [name for name in LEGACY_TRANSFORM_FIELDS if name in fields and param.HasField(name)]


# --- V1 -> V2 ------------------------------------------------------------------------


def upgrade_v1_net(net, notes: list[str]) -> bool:
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
    layer = message_class(v1_layer, "LayerParameter")()
    _fill_layer_from_v1(v1_layer, layer, notes if notes is not None else [])
    return layer


def v1_layer_type(v1_layer) -> str:
    """The type string Caffe gives a V1 layer ("Convolution" for CONVOLUTION)."""
    enum_name = enum_value_name(v1_layer, "type")
    if enum_name not in V1_LAYER_TYPES:
        shown = enum_name or f"number {v1_layer.type}"
        raise BnlintError(f"V1 layer {name_label(v1_layer.name, '(unnamed)')}: unknown V1 layer "
                          f"type {shown}")
    return V1_LAYER_TYPES[enum_name]


def _fill_layer_from_v1(v1_layer, layer, notes: list[str]) -> None:
    label = name_label(v1_layer.name, "(unnamed)")
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
            spec.share_mode = enum_number(spec, "share_mode", mode_name)
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
