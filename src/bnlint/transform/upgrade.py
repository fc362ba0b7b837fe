"""`bnlint upgrade`: Caffe's load-time upgrades written into the file, comments kept.

`bnlint.caffe.upgrade` says what Caffe makes of an old net; this pass edits the text
so that the file says it too, touching only what the upgrade changes:

- V1 `layers { type: CONVOLUTION ... }` -> `layer { type: "Convolution" ... }` in
  place: the field renamed, the enum replaced by its string, `blobs_lr`,
  `weight_decay`, the V1 `param: "name"` strings and `blob_share_mode` merged into
  `param { name share_mode lr_mult decay_mult }` blocks where the first of them was
  (their spelling of each number kept), `*_param` blocks the current format has no
  place for removed (as Caffe drops them);
- the data transformation fields of V1 data layers (scale, mean_file, crop_size,
  mirror) moved into `transform_param`; like Caffe, every V1 data layer then has its
  data parameter and a transform_param, if only empty ones;
- net-level `input` / `input_shape` / `input_dim` -> one Input layer named "input"
  before the first layer, the comments written among those fields kept above it;
- a BatchNorm with exactly three `param` blocks gets lr_mult 0 and decay_mult 0 in
  each (Caffe overrides them on load anyway; the file now says so);
- solvers: `solver_type: ENUM` -> `type: "String"`.

V0 nets (`layers { layer { ... } }`, padding layers folded away) change too much
to edit: they are re-printed from the upgraded message, losing comments, with a note.

Safe mode: the result must parse to exactly the NetParameter (or SolverParameter)
that `bnlint.caffe.upgrade` makes of the input, and upgrading it again must change
nothing; otherwise UnsafeRewriteError (a bug) and nothing is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format

from bnlint.caffe import upgrade as caffe_upgrade
from bnlint.caffe.load import NET, SOLVER, TextFile
from bnlint.caffe.netfile import reparse
from bnlint.errors import BnlintError, ParseError
from bnlint.syntax.edits import (Edit, Locator, apply_edits, indentation_of, insert_after,
                                 insert_before, insert_into, remove_fields, replace_value)
from bnlint.syntax.nodes import Document, Field, ListValue, Message, Scalar
from bnlint.transform import (UnsafeRewriteError, block, detect_style, input_layer_body,
                              is_multiline, quote)

_PARAM_SPEC_SOURCES = ("param", "blob_share_mode", "blobs_lr", "weight_decay")
_DATA_PARAMS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
_INPUT_FIELDS = ("input", "input_shape", "input_dim")


@dataclass
class UpgradeTextResult:
    """The upgraded text and the notes (Caffe's, and how the text was made)."""

    text: str
    notes: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def upgrade_text(text_file: TextFile, *, net_inputs: bool = True,
                 check: bool = True) -> UpgradeTextResult:
    """The text of `text_file` upgraded as Caffe upgrades it on load.

    `net_inputs=False` leaves net-level input fields alone (to-deploy keeps them);
    then the result equals Caffe's upgrade of the net without its inputs, inputs
    kept as written. Raises BnlintError where Caffe refuses the net.
    """
    if text_file.kind == SOLVER:
        result = _upgrade_solver_text(text_file)
    elif text_file.kind == NET:
        result = _upgrade_net_text(text_file, net_inputs)
    else:
        raise BnlintError(f"cannot upgrade a {text_file.kind}", path=text_file.path)
    if check:
        _check(text_file, result, net_inputs)
    return result


# --- nets ------------------------------------------------------------------------------

def expected_upgrade(message, net_inputs: bool = True):
    """The message Caffe's upgrade makes (with `net_inputs=False`: inputs left as they are)."""
    if net_inputs:
        return caffe_upgrade.upgrade_net(message)
    stripped = type(message)()
    stripped.CopyFrom(message)
    for name in _INPUT_FIELDS:
        stripped.ClearField(name)
    result = caffe_upgrade.upgrade_net(stripped)
    for name in _INPUT_FIELDS:
        getattr(result.message, name).extend(getattr(message, name))
    return result


def _upgrade_net_text(text_file: TextFile, net_inputs: bool) -> UpgradeTextResult:
    message = text_file.message
    expected = expected_upgrade(message, net_inputs)   # raises where Caffe aborts
    result = UpgradeTextResult(text_file.source.text, list(expected.notes),
                               list(expected.steps))
    if not expected.steps:
        return result
    tree = text_file.tree
    if caffe_upgrade.needs_v0_upgrade(message) or _has_listed(tree, "layers"):
        result.text = text_format.MessageToString(expected.message)
        why = ("V0 nets change too much to edit in place" if
               caffe_upgrade.needs_v0_upgrade(message) else
               "'layers: [ ... ]' lists are not edited in place")
        result.notes.append(f"{why}: the net was re-printed from the upgraded message, "
                            f"so its comments and layout are lost")
        return result
    editor = _NetEditor(text_file)
    if caffe_upgrade.needs_data_upgrade(message):
        editor.data_transformation()
    if caffe_upgrade.needs_v1_upgrade(message):
        editor.v1_layers()
    if net_inputs and caffe_upgrade.needs_input_upgrade(message):
        editor.net_inputs()
    editor.batch_norm()
    result.text = apply_edits(text_file.source.text, editor.edits)
    return result


def _has_listed(tree: Document, name: str) -> bool:
    return any(f.name == name and isinstance(f.value, ListValue) for f in tree.fields)


class _NetEditor:
    """Plans the edits of one net's upgrade against its parse."""

    def __init__(self, text_file: TextFile) -> None:
        self.text_file = text_file
        self.text = text_file.source.text
        self.tree = text_file.tree
        self.message = text_file.message
        self.loc = Locator(self.tree)
        self.style = detect_style(self.tree, self.text)
        self.edits: list[Edit] = []
        self.v1_nodes = [f for f in self.tree.fields
                         if f.name == "layers" and isinstance(f.value, Message)]

    # V1 data layers: legacy transformation fields -> transform_param
    def data_transformation(self) -> None:
        for node, v1 in zip(self.v1_nodes, self.message.layers):
            param_name = _DATA_PARAMS.get(_enum_name(v1, "type"))
            if param_name is None:
                continue
            body: Message = node.value
            param = body.get(param_name)
            transform = body.get("transform_param")
            moved: list[tuple[str, str]] = []
            if param is not None and isinstance(param.value, Message):
                legacy = [f for f in param.value.fields if f.name in _TRANSFORM_FIELDS
                          and isinstance(f.value, Scalar)]
                last = {f.name: f for f in legacy}
                moved = [(name, last[name].value.text) for name in _TRANSFORM_FIELDS
                         if name in last]
                self.edits += remove_fields(self.loc, legacy)
            multiline = _layer_is_multiline(body)
            if transform is None:
                items = [f"{name}: {value}" for name, value in moved]
                anchor = param if param is not None else _first_field(body)
                indent = indentation_of(anchor)
                new = block("transform_param", items, self.style, indent, multiline)
                if not items and multiline and indent is not None:
                    new = "transform_param {" + self.style.newline + indent + "}"
                self.edits.append(insert_before(anchor, new))
            elif isinstance(transform.value, Message):
                self._set_in(transform.value, moved)
            if param is None:
                anchor = _last_field(body)
                indent = indentation_of(anchor)
                empty = (f"{param_name} {{" + self.style.newline + indent + "}"
                         if multiline and indent is not None else f"{param_name} {{ }}")
                self.edits.append(insert_after(self.loc, anchor, empty))

    def _set_in(self, message: Message, settings: list[tuple[str, str]]) -> None:
        """Set fields in a block: replace a written value, add the others together."""
        added = []
        for name, value in settings:
            present = message.get(name)
            if present is not None and isinstance(present.value, Scalar):
                if present.value.text != value:
                    self.edits.append(replace_value(present, value))
            else:
                added.append(f"{name}: {value}")
        if added:
            self.edits.append(insert_into(self.loc, message, self._join(message, added)))

    def _join(self, message: Message, items: list[str]) -> str:
        if message.fields:
            indent = indentation_of(message.fields[-1])
            if indent is not None:
                return (self.style.newline + indent).join(items)
        return " ".join(items)

    # V1 -> V2
    def v1_layers(self) -> None:
        layer_fields = self.message.DESCRIPTOR.file.message_types_by_name[
            "LayerParameter"].fields_by_name
        for node, v1 in zip(self.v1_nodes, self.message.layers):
            name_tok = node.name_token
            self.edits.append(Edit(name_tok.offset, name_tok.end, "layer"))
            body: Message = node.value
            removed: list[Field] = []
            for f in body.fields:
                if f.name == "type" and isinstance(f.value, Scalar) and v1.HasField("type"):
                    self.edits.append(replace_value(f, quote(caffe_upgrade.v1_layer_type(v1))))
                elif f.name.endswith("_param") and isinstance(f.value, Message):
                    fd = v1.DESCRIPTOR.fields_by_name.get(f.name)
                    target = layer_fields.get(f.name)
                    if fd is not None and fd.message_type is not None and (
                            target is None or target.message_type is None or
                            target.message_type.full_name != fd.message_type.full_name):
                        removed.append(f)
            sources = [f for f in body.fields if f.name in _PARAM_SPEC_SOURCES]
            if sources:
                specs = self._param_specs(v1, body)
                first = sources[0]
                indent = indentation_of(first)
                joiner = self.style.newline + indent if indent is not None else " "
                text = joiner.join(specs) if specs else ""
                if specs:
                    end = self.loc.last_token(first).end
                    if indent is not None:      # its comment moved onto its param block
                        end = self._end_with_comment(first)[0]
                    self.edits.append(Edit(first.start, end, text))
                else:
                    removed.append(first)
                removed.extend(sources[1:])
            self.edits += remove_fields(self.loc, removed)

    def _param_specs(self, v1, body: Message) -> list[str]:
        """One `param { ... }` text per ParamSpec Caffe builds from the V1 lists."""
        count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr),
                    len(v1.weight_decay))
        names = _texts(body, "param", len(v1.param), [quote(p) for p in v1.param])
        share_enum = v1.DESCRIPTOR.fields_by_name["blob_share_mode"].enum_type
        modes = [share_enum.values_by_number[m].name for m in v1.blob_share_mode]
        lrs = _texts(body, "blobs_lr", len(v1.blobs_lr), [_number(x) for x in v1.blobs_lr])
        decays = _texts(body, "weight_decay", len(v1.weight_decay),
                        [_number(x) for x in v1.weight_decay])
        multiline = _layer_is_multiline(body)
        first = next(f for f in body.fields if f.name in _PARAM_SPEC_SOURCES)
        indent = indentation_of(first)
        comments = self._spec_comments(body) if indent is not None else {}
        specs = []
        for i in range(count):
            items = []
            if i < len(names):
                items.append(f"name: {names[i]}")
            if i < len(modes):
                items.append(f"share_mode: {modes[i]}")
            if i < len(lrs):
                items.append(f"lr_mult: {lrs[i]}")
            if i < len(decays):
                items.append(f"decay_mult: {decays[i]}")
            spec = block("param", items, self.style, indent, multiline)
            if i in comments:
                note = "  # " + "; ".join(comments[i])
                spec = spec.replace("{", "{" + note, 1) if multiline else spec + note
            specs.append(spec)
        return specs

    def _spec_comments(self, body: Message) -> dict[int, list[str]]:
        """Same-line comments of blobs_lr/weight_decay/param entries, by blob index:
        `blobs_lr: 1  # weights` says what blob 0 is, so its param block keeps it."""
        seen = dict.fromkeys(_PARAM_SPEC_SOURCES, 0)
        out: dict[int, list[str]] = {}
        first = True
        for f in body.fields:
            if f.name not in seen:
                continue
            if isinstance(f.value, ListValue):
                seen[f.name] += len(f.value.items)
                continue
            index = seen[f.name]
            seen[f.name] += 1
            # comment lines above a removed entry (the first one's stay where they are)
            above = [] if first else _comments(f.name_token.prefix.split("\n", 1)[-1]
                                               if "\n" in f.name_token.prefix else "")
            first = False
            comment = self._end_with_comment(f)[1]
            texts = [c.lstrip("#").strip() for c in above + comment]
            if texts:
                out.setdefault(index, []).extend(texts)
        return out

    # net-level inputs -> an Input layer "input" at the front
    def net_inputs(self) -> None:
        msg = self.message
        fields = [f for f in self.tree.fields if f.name in _INPUT_FIELDS]
        shapes = _input_shapes(msg)
        layers = [f for f in self.tree.fields if f.name in ("layer", "layers")]
        if shapes is None:
            self.edits += remove_fields(self.loc, fields)
            return
        first_layer = layers[0] if layers else None
        indices = [self.tree.fields.index(f) for f in fields]
        contiguous = indices == list(range(indices[0], indices[0] + len(indices)))
        before_layers = first_layer is None or fields[-1].start < first_layer.start
        if contiguous and before_layers:
            first = fields[0]
            indent = indentation_of(first)
            end, trailing = self._end_with_comment(fields[-1])
            comments = [c for f in fields[1:] for c in _comments(f.name_token.prefix)]
            comments += trailing
            new = self._input_layer(indent, shapes, comments)
            self.edits.append(Edit(first.start, end, new))
            return
        self.edits += remove_fields(self.loc, fields)
        if first_layer is None:
            eof = self.tree.eof
            sep = "" if self.text.endswith("\n") or not self.text else self.style.newline
            self.edits.append(Edit(eof.offset, eof.offset,
                                   sep + self._input_layer("", shapes, []) + self.style.newline))
            return
        indent = indentation_of(first_layer)
        if indent is None:
            new = self._input_layer(None, shapes, [])
            self.edits.append(Edit(first_layer.start, first_layer.start, new + " "))
            return
        start = _own_block_start(first_layer)
        self.edits.append(Edit(start, start, indent + self._input_layer(indent, shapes, []) +
                               self.style.newline))

    def _input_layer(self, indent: str | None, shapes, comments: list[str]) -> str:
        multiline = True
        sample = next((f for f in self.tree.fields if f.name in ("layer", "layers")
                       and isinstance(f.value, Message)), None)
        if sample is not None:
            multiline = "\n" in self.text[sample.value.start:sample.value.end]
        tops = list(self.message.input)
        body = input_layer_body(caffe_upgrade.INPUT_LAYER_NAME, tops, shapes, self.style,
                                indent, multiline)
        text = block("layer", body, self.style, indent, multiline)
        if comments:
            nl_indent = self.style.newline + (indent or "")
            text = nl_indent.join(comments) + nl_indent + text
        return text

    def _end_with_comment(self, last: Field) -> tuple[int, list[str]]:
        """The end of a field including a comment on the rest of its line."""
        end_tok = self.loc.last_token(last)
        after = self.loc.next_token(end_tok)
        prefix = after.prefix if after is not None else ""
        line = prefix.split("\n", 1)[0]
        if "#" in line and "\n" in prefix:
            return end_tok.end + len(line.rstrip("\r")), [line.strip()]
        return end_tok.end, []

    # BatchNorm: three param blocks -> lr_mult 0, decay_mult 0
    def batch_norm(self) -> None:
        nodes = [f for f in self.tree.fields if f.name == "layer" and isinstance(f.value, Message)]
        for node, layer in zip(nodes, self.message.layer):
            if layer.type != "BatchNorm" or len(layer.param) != 3:
                continue
            blocks = [f for f in node.value.fields if f.name == "param"]
            if len(blocks) != 3 or not all(isinstance(b.value, Message) for b in blocks):
                raise UnsafeRewriteError(f"BatchNorm '{layer.name}': its param blocks are "
                                         f"written in a form the upgrade does not edit")
            for b in blocks:
                missing = []
                for fname in ("lr_mult", "decay_mult"):
                    present = b.value.get(fname)
                    if present is None or not isinstance(present.value, Scalar):
                        missing.append(f"{fname}: 0")
                    elif not _is_zero(present.value.text):
                        self.edits.append(replace_value(present, "0"))
                if missing:
                    self.edits.append(insert_into(self.loc, b.value,
                                                  self._join(b.value, missing)))


def _input_shapes(msg) -> list[tuple[int, ...]] | None:
    """One shape per net input, as UpgradeNetInput reads them (None: no shapes given)."""
    inputs = list(msg.input)
    if len(msg.input_shape):
        return [tuple(int(d) for d in s.dim) for s in list(msg.input_shape)[:len(inputs)]]
    dims = list(msg.input_dim)
    if dims:
        return [tuple(int(d) for d in dims[4 * i:4 * i + 4]) for i in range(len(inputs))]
    return None


def _comments(prefix: str) -> list[str]:
    return [line.strip() for line in prefix.split("\n") if line.strip().startswith("#")]


def _own_block_start(field: Field) -> int:
    """Where a field's own lines begin: the comment lines right above it, up to a blank."""
    prefix = field.name_token.prefix
    pos = field.start - len(prefix)
    lines = prefix.split("\n")
    start = field.start - len(lines[-1])
    for line in reversed(lines[1:-1] if pos > 0 else lines[:-1]):
        if not line.strip().startswith("#"):
            break
        start -= len(line) + 1
    return start


def _layer_is_multiline(body: Message) -> bool:
    """Whether a layer writes its blocks one field per line."""
    subs = [f.value for f in body.fields if isinstance(f.value, Message)]
    if subs:
        return any(is_multiline(m) for m in subs)
    return is_multiline(body)


def _first_field(body: Message) -> Field:
    return body.fields[0]


def _last_field(body: Message) -> Field:
    return body.fields[-1]


def _texts(body: Message, name: str, count: int, fallback: list[str]) -> list[str]:
    """The values of a repeated field as written (their spelling kept), if all are readable."""
    texts = []
    for f in body.get_all(name):
        if isinstance(f.value, Scalar):
            texts.append(f.value.text)
        elif isinstance(f.value, ListValue):
            texts.extend(i.text for i in f.value.items if isinstance(i, Scalar))
    return texts if len(texts) == count else fallback


def _number(value: float) -> str:
    return f"{value:.9g}"


def _is_zero(text: str) -> bool:
    try:
        return float(text.rstrip("fF")) == 0.0
    except ValueError:
        return False


def _enum_name(message, name: str) -> str | None:
    enum_type = message.DESCRIPTOR.fields_by_name[name].enum_type
    value = enum_type.values_by_number.get(getattr(message, name))
    return value.name if value is not None else None


# --- solvers -------------------------------------------------------------------------

def _upgrade_solver_text(text_file: TextFile) -> UpgradeTextResult:
    expected = caffe_upgrade.upgrade_solver(text_file.message)
    result = UpgradeTextResult(text_file.source.text, list(expected.notes),
                               list(expected.steps))
    if not expected.steps:
        return result
    edits = []
    for f in text_file.tree.fields:
        if f.name == "solver_type" and f.value is not None:
            edits.append(Edit(f.start, f.value.end, f"type: {quote(expected.message.type)}"))
    result.text = apply_edits(text_file.source.text, edits)
    return result


# --- safe mode -----------------------------------------------------------------------

def _check(text_file: TextFile, result: UpgradeTextResult, net_inputs: bool) -> None:
    """The output parses to Caffe's upgrade of the input, and is stable."""
    if result.text == text_file.source.text:
        return
    try:
        out = reparse(text_file, result.text)
    except ParseError as err:
        raise UnsafeRewriteError(f"upgrade of {text_file.path} produced text that does not "
                                 f"parse: {err}") from None
    if text_file.kind == SOLVER:
        expected = caffe_upgrade.upgrade_solver(text_file.message).message
    else:
        expected = expected_upgrade(text_file.message, net_inputs).message
    if out.message != expected:
        diff = _first_difference(expected, out.message)
        raise UnsafeRewriteError(f"upgrade of {text_file.path} does not equal Caffe's upgrade "
                                 f"of it ({diff})")
    again = upgrade_text(out, net_inputs=net_inputs, check=False)
    if again.text != result.text:
        raise UnsafeRewriteError(f"upgrade of {text_file.path} is not stable: a second run "
                                 f"changes it")


def _first_difference(expected, actual) -> str:
    a = text_format.MessageToString(expected).splitlines()
    b = text_format.MessageToString(actual).splitlines()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i + 1}: expected {x.strip()!r}, got {y.strip()!r}"
    return f"expected {len(a)} lines, got {len(b)}"
