"""The deploy net compared: with a hand-written one (`--check`) and with the layers a
.caffemodel holds (`--weights`)."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor

from bnlint.caffe import inputs as net_inputs
from bnlint.caffe import known
from bnlint.caffe.load import TextFile
from bnlint.caffe.messages import INVALID_VALUE, UNKNOWN_FIELD
from bnlint.caffe.net import LayerView, NetGraph, NetState, net_view, rule_matches
from bnlint.caffe.phase import Phase
from bnlint.caffe.semantics import normal_form, normalize
from bnlint.errors import BnlintError, WeightsError
from bnlint.syntax.nodes import iter_tokens, walk_fields
from bnlint.transform import quote
from bnlint.transform.deploy.options import Shape

INPUT_KEY = "<Input>"

# What a `Difference` is about.
NET_FIELD = "net-field"            # a net-level field
ONLY_GENERATED = "only-generated"  # a layer only the generated net has
ONLY_DEPLOY = "only-deploy"        # a layer only the hand-written deploy net has
LAYER_FIELD = "layer-field"        # a field of a layer both have
LAYER_ORDER = "layer-order"        # the first place the shared layers' order differs


@dataclass(frozen=True)
class Difference:
    """One way the generated deploy net differs from the hand-written one, as Caffe runs
    them; `str()` is the line `--check` prints."""

    kind: str                      # NET_FIELD, ONLY_GENERATED, ONLY_DEPLOY, LAYER_FIELD, ...
    layer: str = ""                # the layer's name (INPUT_KEY: the Input layer)
    layer_type: str = ""
    field: str = ""                # the field's path, e.g. inner_product_param.num_output
    generated: str | None = None   # its value there (None: unset); LAYER_ORDER: the layer
    deploy: str | None = None

    def __str__(self) -> str:
        where = f"layer {_shown(self.layer)} ({self.layer_type})"
        if self.kind == NET_FIELD:
            return (f"net: {self.field}: generated {self.generated or 'unset'}, deploy "
                    f"{self.deploy or 'unset'}")
        if self.kind == ONLY_GENERATED:
            return f"{where}: only in the generated net"
        if self.kind == ONLY_DEPLOY:
            return f"{where}: only in the deploy net"
        if self.kind == LAYER_ORDER:
            return (f"layer order: the generated net has {_shown(self.generated)} where the "
                    f"deploy net has {_shown(self.deploy)}")
        generated = "unset" if self.generated is None else self.generated
        deploy = "unset" if self.deploy is None else self.deploy
        return f"{where}: {self.field}: generated {generated}, deploy {deploy}"


@dataclass
class _NetSemantics:
    net: dict[str, str]
    layers: dict[str, tuple[str, dict[str, str]]]   # key -> (type, flat fields)
    order: list[str]


def reference_input_shapes(text_file: TextFile) -> dict[str, Shape]:
    """The input shapes a (deploy) net declares: Input layers and net-level inputs."""
    view = net_view(text_file)
    found = net_inputs.find_inputs(view, NetState(Phase.TEST))
    return {b.name: b.shape for b in found if b.shape is not None}


def compare_deploy(generated: TextFile, reference: TextFile,
                   state: NetState | None = None) -> list[Difference]:
    """Differences between two nets as Caffe runs them, in the order `--check` prints them.

    Both are upgraded (so net-level inputs equal an Input layer) and filtered by the
    state; fillers, param blocks, comments, formatting, values written at their
    default, the net's name, the Input layer's name and `engine` choices (an
    implementation, not the maths) are ignored. Deploy nets run in TEST: the phase
    of `state` is not used, its stages are. An unset
    use_global_stats counts as what the phase makes it. Fork fields the schema does
    not know are compared as text.
    """
    state = NetState(Phase.TEST, state.stages if state else ())
    ours = _semantics(generated, state)
    theirs = _semantics(reference, state)
    found: list[Difference] = []
    for key in sorted(set(ours.net) | set(theirs.net)):
        a, b = ours.net.get(key), theirs.net.get(key)
        if a != b:
            found.append(Difference(NET_FIELD, field=key, generated=a, deploy=b))
    for key in ours.order:
        if key not in theirs.layers:
            found.append(Difference(ONLY_GENERATED, key, ours.layers[key][0]))
    for key in theirs.order:
        if key not in ours.layers:
            found.append(Difference(ONLY_DEPLOY, key, theirs.layers[key][0]))
    for key in ours.order:
        if key not in theirs.layers:
            continue
        (type_a, a), (_, b) = ours.layers[key], theirs.layers[key]
        for path in sorted(set(a) | set(b)):
            if a.get(path) != b.get(path):
                found.append(Difference(LAYER_FIELD, key, type_a, path, a.get(path),
                                        b.get(path)))
    common_ours = [k for k in ours.order if k in theirs.layers]
    common_theirs = [k for k in theirs.order if k in ours.layers]
    if common_ours != common_theirs:
        i = next(i for i, (x, y) in enumerate(zip(common_ours, common_theirs)) if x != y)
        found.append(Difference(LAYER_ORDER, generated=common_ours[i],
                                deploy=common_theirs[i]))
    return found


def _shown(key: str) -> str:
    return key if key.startswith("<") else f"'{key}'"


def _semantics(text_file: TextFile, state: NetState) -> _NetSemantics:
    from bnlint.caffe.upgrade import upgrade_net

    upgraded = upgrade_net(text_file.message).message
    forks = _fork_fields(text_file, state)
    layers: dict[str, tuple[str, dict[str, str]]] = {}
    order: list[str] = []
    inputs = 0
    for layer in upgraded.layer:
        if len(layer.include):
            if not any(rule_matches(r, state) for r in layer.include):
                continue
        elif any(rule_matches(r, state) for r in layer.exclude):
            continue
        phase = layer.phase if layer.HasField("phase") else state.phase
        dropped = ("include", "exclude", "param", "blobs")
        if layer.type == "Input":
            inputs += 1
            key = INPUT_KEY if inputs == 1 else f"<Input {inputs}>"
            dropped += ("name",)
        else:
            key = layer.name
        norm = normal_form(layer, phase, dropped)
        flat = _flatten(norm)
        flat.update(forks.get(layer.name, {}) if norm.type != "Input" else {})
        if key in layers:
            key = f"{key} #{sum(1 for k in order if k.split(' #')[0] == key) + 1}"
        layers[key] = (layer.type, flat)
        order.append(key)
    net = type(upgraded)()
    net.CopyFrom(upgraded)
    for name in ("layer", "name", "state"):
        net.ClearField(name)
    normalize(net)
    return _NetSemantics(_flatten(net), layers, order)


def _flatten(message, prefix: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    out = {} if out is None else out
    for fd, value in message.ListFields():
        path = prefix + fd.name
        if fd.message_type is not None:
            if fd.is_repeated:
                for i, sub in enumerate(value):
                    if not sub.ListFields():
                        out[f"{path}[{i}]"] = "{}"
                    _flatten(sub, f"{path}[{i}].", out)
            else:
                _flatten(value, path + ".", out)
        elif fd.is_repeated:
            out[path] = "[" + ", ".join(_format(fd, v) for v in value) + "]"
        else:
            out[path] = _format(fd, value)
    return out


def _format(fd, value) -> str:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        named = fd.enum_type.values_by_number.get(value)
        return named.name if named else str(value)
    if fd.type == FieldDescriptor.TYPE_FLOAT:
        return f"{value:.7g}"
    if fd.type == FieldDescriptor.TYPE_DOUBLE:
        return f"{value:.15g}"
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if fd.type == FieldDescriptor.TYPE_STRING:
        return quote(value)
    return repr(value) if isinstance(value, bytes) else str(value)


def _fork_fields(text_file: TextFile, state: NetState) -> dict[str, dict[str, str]]:
    """Per layer name: fields the schema does not know (or could not read), as text."""
    problems = [p for p in text_file.problems if p.kind in (UNKNOWN_FIELD, INVALID_VALUE)]
    if not problems:
        return {}
    view = net_view(text_file)
    out: dict[str, dict[str, str]] = {}
    for layer in view.layers:
        if layer.legacy is not None:
            continue
        inside = [p for p in problems if layer.node.start <= p.start < layer.node.end]
        if not inside:
            continue
        starts = {p.start for p in inside}
        fields = out.setdefault(layer.name, {})
        for f, parents in walk_fields(layer.body):
            if f.name_token.offset in starts or (f.value is not None and
                                                 f.value.start in starts):
                path = ".".join([p.name for p in parents] + [f.name])
                text = " ".join(t.text for t in iter_tokens(f))
                key = path if path not in fields else f"{path} #{len(fields)}"
                fields[key] = text
    return out


# --- --weights: layers whose parameters the caffemodel lacks ----------------------------


def caffemodel_blob_counts(path: str) -> dict[str, int]:
    """Layer name -> number of blobs in a binary .caffemodel (later entries win, as in Caffe)."""
    from google.protobuf.message import DecodeError

    from bnlint.caffe.schema import default_schema
    from bnlint.files import read_bytes

    data = read_bytes(path)
    net = default_schema().message_class("NetParameter")()
    try:
        net.ParseFromString(data)
    except DecodeError as err:
        raise WeightsError(f"not a readable .caffemodel ({err})", path=path) from None
    if not len(net.layer) and not len(net.layers):
        raise WeightsError("not a .caffemodel: it holds no layers", path=path)
    counts: dict[str, int] = {}
    for layer in list(net.layers) + list(net.layer):
        counts[layer.name] = len(layer.blobs)
    return counts


def layers_missing_weights(deploy: TextFile, counts: dict[str, int]) -> list[LayerView]:
    """Layers of a deploy net that have learnable blobs but none in the weights file.

    Caffe fills such blobs from the fillers (or leaves them zero when the filler is
    gone), so the deployed net computes something else than the trained one.
    """
    from bnlint.caffe.infer import infer_graph_shapes

    view = net_view(deploy)
    graph = NetGraph(view, NetState(Phase.TEST))
    params: dict[int, bool] = {}
    try:
        shapes = infer_graph_shapes(graph)
        params = {i: bool(p) for i, p in shapes.params.items()}
    except BnlintError:
        params = {}
    missing = []
    for lv in graph.layers:
        has = params.get(lv.index)
        if has is None:
            has = lv.type in known.PARAMETRIC_LAYER_TYPES
        if has and counts.get(lv.name, 0) == 0:
            missing.append(lv)
    return missing
