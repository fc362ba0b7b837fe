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

The tables of old names (`names`), the legacy `layers` steps (`legacy`) and the
field helpers they share (`fields`) are modules of their own; the predicates, the
later steps and the solver upgrade are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bnlint.caffe.upgrade.fields import enum_value_name, message_class, name_label
from bnlint.caffe.upgrade.legacy import (legacy_transform_fields, upgrade_data_transformation,
                                         upgrade_v0_net, upgrade_v1_layer, upgrade_v1_net,
                                         v1_layer_type)
from bnlint.caffe.upgrade.names import (DATA_LAYER_PARAMS, SOLVER_TYPES, V0_LAYER_TYPES,
                                        V1_LAYER_TYPES)
from bnlint.errors import BnlintError

# Step names, in Caffe's order; `UpgradeResult.steps` lists those that changed something.
STEP_V0 = "v0-to-v1"
STEP_DATA = "data-transformation"
STEP_V1 = "v1-to-v2"
STEP_INPUT = "input-layer"
STEP_BATCH_NORM = "batch-norm-params"
STEP_SOLVER_TYPE = "solver-type"

INPUT_LAYER_NAME = "input"


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
        param_name = DATA_LAYER_PARAMS.get(enum_value_name(layer, "type"))
        if param_name and legacy_transform_fields(getattr(layer, param_name)):
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
        (STEP_V0, needs_v0_upgrade, upgrade_v0_net),
        (STEP_DATA, needs_data_upgrade, upgrade_data_transformation),
        (STEP_V1, needs_v1_upgrade, upgrade_v1_net),
        (STEP_INPUT, needs_input_upgrade, _upgrade_input),
        (STEP_BATCH_NORM, needs_batch_norm_upgrade, _upgrade_batch_norm),
    )
    for name, needed, run in steps:
        if needed(upgraded) and run(upgraded, result.notes):
            result.steps.append(name)
    return result


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
        layer = message_class(net, "LayerParameter")()
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
        note = (f"BatchNorm {name_label(layer.name, f'layer[{index}]')}: 3 param blocks → "
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
    enum_name = enum_value_name(upgraded, "solver_type")
    if enum_name not in SOLVER_TYPES:
        raise BnlintError(f"unknown solver_type {enum_name or upgraded.solver_type}")
    upgraded.type = SOLVER_TYPES[enum_name]
    upgraded.ClearField("solver_type")
    result.notes.append(f"solver_type: {enum_name} → type: \"{upgraded.type}\"")
    result.steps.append(STEP_SOLVER_TYPE)
    return result


__all__ = ["INPUT_LAYER_NAME", "SOLVER_TYPES", "STEP_BATCH_NORM", "STEP_DATA", "STEP_INPUT",
           "STEP_SOLVER_TYPE", "STEP_V0", "STEP_V1", "V0_LAYER_TYPES", "V1_LAYER_TYPES",
           "UpgradeResult", "needs_batch_norm_upgrade", "needs_data_upgrade",
           "needs_input_upgrade", "needs_solver_upgrade", "needs_upgrade", "needs_v0_upgrade",
           "needs_v1_upgrade", "upgrade_net", "upgrade_solver", "upgrade_v1_layer",
           "v1_layer_type"]
