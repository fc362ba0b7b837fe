"""The output of a fold: format-preserving text edits and the new weights.

The edits, chosen to be minimal:

- Folded: the BatchNorm and Scale layers are removed (with their own comment lines,
  as `remove_field` does). When the chain ends in another name than the producer's top
  (`conv -> bn_out -> s_out`), the producer's top is renamed to that last name: one
  edit, and every later reader stays as written. That rename is always safe here,
  because folding requires that nothing but the BatchNorm reads the producer's top,
  and Caffe forbids a second non-in-place writer of the last name. (Rewiring the
  readers' bottoms instead would touch each consumer and each in-place layer after
  them.) `bias_term: false` on the producer becomes `true`; its new bias blob is
  written.
- Not foldable (the producer's output has other readers, it is a Pooling or an input,
  ...): with a Scale after it, the BatchNorm is removed and the Scale reads the
  BatchNorm's bottom and gets `bias_term: true`; alone, the BatchNorm layer becomes a
  Scale layer with bias in place (type, parameter block, `param` specs). Both keep the
  layer names the weights are matched by. `keep_unfoldable` leaves them as they are.
- `to_dialect` "bvlc": what is left of the forks' forms becomes BVLC's. A kept NVCaffe
  BatchNorm becomes a BVLC BatchNorm (blobs mean, variance, 1; its NVCaffe-only fields
  removed, eps raised to NVCaffe's 1e-5 floor where lower) followed by an in-place
  Scale with bias holding its scale and bias; a kept SegNet BN becomes a BatchNorm
  that passes x through exactly (mean 0, variance 1 - eps) and that Scale. A fork's
  form that cannot be written so (no weights, batch statistics) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlint.caffe.infer import infer_graph_shapes
from bnlint.caffe.layers import base as layer_fields
from bnlint.caffe.layers.batchnorm import (DEFAULT_EPS, MIN_EPS, NVCAFFE_FIELDS,
                                           NVCAFFE_LAYER_FIELDS, SEGNET_FORM)
from bnlint.caffe.net import LayerView, NetGraph, NetView
from bnlint.syntax.edits import (Edit, Locator, insert_after, insert_into, remove_field,
                                 remove_fields, replace_value)
from bnlint.syntax.nodes import Field, Message, Scalar
from bnlint.transform import collapse_blank_lines
from bnlint.transform.fold.maths import unit_variance
from bnlint.transform.fold.sites import TEST_STATE
from bnlint.transform.fold.statistics import Stats, reshaped


@dataclass
class Target:
    """A producer receiving one or more folds (a chain conv -> bn -> bn folds twice)."""

    layer: LayerView
    weight: np.ndarray                    # float64
    bias: np.ndarray | None               # float64; None: the layer has no bias yet
    out_axis: int
    groups: int
    channels: int
    top_name: str                         # the producer's top after the folds so far
    top_text: str                         # ... as source text (quoted as the file quotes it)


@dataclass
class Convert:
    """A BatchNorm done by a Scale layer: the BN rewritten, or the Scale after it reused."""

    batchnorm: LayerView
    scale: LayerView | None               # reuse this Scale (the BN is removed)
    arrays: tuple[np.ndarray, np.ndarray]


@dataclass
class ToBvlc:
    """A kept fork BatchNorm written in BVLC's form: BatchNorm (+ a new Scale after it)."""

    layer: LayerView
    stats: Stats
    scale_name: str | None                # the new in-place Scale; None: no affine part


def scalar_text(field: Field | None) -> str | None:
    """A field's value as written, when it is one scalar (not a `[list]`)."""
    if field is None or not isinstance(field.value, Scalar):
        return None
    return field.value.text


def quoted(name: str) -> str:
    """A protobuf text string literal."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PlanOutput:
    """The planner's output half: the edits and arrays of what it decided (the
    attributes are `Planner`'s)."""

    @staticmethod
    def _param_block(lv: LayerView) -> str:
        return "inner_product_param" if lv.type == "InnerProduct" else "convolution_param"

    def _had_no_bias(self, lv: LayerView) -> bool:
        return not getattr(lv.message, self._param_block(lv)).bias_term

    # --- the output ----------------------------------------------------------------------

    def edits(self) -> list[Edit]:
        loc = Locator(self.text_file.tree)
        edits: list[Edit] = []
        for index in sorted(self.removed):
            edits.append(remove_field(loc, self.view.layers[index].node))
        edits = collapse_blank_lines(self.text, edits)
        for target in self.targets.values():
            producer = target.layer
            top = producer.find("top")
            if target.top_name != producer.tops[0]:
                edits.append(replace_value(top, target.top_text))
            if self._had_no_bias(producer):
                edits.append(self._bias_term_edit(loc, producer, self._param_block(producer)))
        for convert in self.converts:
            edits.extend(self._convert_edits(loc, convert))
        for conv in self.to_bvlc:
            edits.extend(self._to_bvlc_edits(loc, conv))
        return edits

    @staticmethod
    def _bias_term_edit(loc: Locator, lv: LayerView, block: str) -> Edit:
        """`bias_term: true` in the layer's `block` (replaced, added, or a new block)."""
        existing = lv.find(f"{block}.bias_term")
        if existing is not None:
            return replace_value(existing, "true")
        holder = lv.find(block)
        if holder is not None and isinstance(holder.value, Message):
            return insert_into(loc, holder.value, "bias_term: true")
        return insert_into(loc, lv.body, f"{block} {{ bias_term: true }}")

    def _convert_edits(self, loc: Locator, convert: Convert) -> list[Edit]:
        bn, scale = convert.batchnorm, convert.scale
        if scale is not None:
            # The BatchNorm is removed (above); the Scale reads what it read.
            edits = []
            bottom = scale.find_all("bottom")[0]
            new_bottom = bn.find_all("bottom")[0].value.text
            if bottom.value.text != new_bottom:
                edits.append(replace_value(bottom, new_bottom))
            if not scale.message.scale_param.bias_term:
                edits.append(self._bias_term_edit(loc, scale, "scale_param"))
            return edits
        edits = [replace_value(bn.find("type"), '"Scale"')]
        # BVLC's param specs are the statistics'; SegNet's two are its scale and shift,
        # which the Scale's two blobs are.
        gone = list(bn.find_all("param")) if bn.type == "BatchNorm" else []
        gone += self._nvcaffe_layer_fields(bn)
        block = "batch_norm_param" if bn.type == "BatchNorm" else "bn_param"
        blocks = bn.find_all(block)
        gone += blocks[:-1]
        edits.extend(remove_fields(loc, gone))
        new_block = "scale_param { bias_term: true }"
        if blocks:
            last = blocks[-1]
            edits.append(Edit(last.start, loc.last_token(last).end, new_block))
        else:
            edits.append(insert_after(loc, bn.find_all("top")[-1], new_block))
        return edits

    def _nvcaffe_layer_fields(self, lv: LayerView) -> list[Field]:
        """With to_dialect, NVCaffe's precision fields of a layer the fold rewrites."""
        if self.to_dialect is None:
            return []
        return [f for f in lv.body.fields if f.name in NVCAFFE_LAYER_FIELDS]

    def _to_bvlc_edits(self, loc: Locator, conv: ToBvlc) -> list[Edit]:
        """The kept fork BatchNorm as BVLC's BatchNorm, and its new Scale after it."""
        bn = conv.layer
        edits: list[Edit] = []
        specs = list(bn.find_all("param"))
        gone = self._nvcaffe_layer_fields(bn)
        if conv.stats.form == SEGNET_FORM:
            edits.append(replace_value(bn.find("type"), '"BatchNorm"'))
            gone += bn.find_all("bn_param")
            moved = specs                 # SegNet's specs are the scale's and the shift's
        else:
            moved = specs[3:]             # NVCaffe's 4th and 5th: the scale's and bias's
            edits.extend(self._bvlc_param_edits(bn, gone))
        gone += moved
        edits.extend(remove_from_layer(loc, bn, gone))
        if conv.scale_name is not None:
            top = scalar_text(bn.find_all("top")[0]) or quoted(bn.tops[0])
            parts = [f"name: {quoted(conv.scale_name)}", 'type: "Scale"', f"bottom: {top}",
                     f"top: {top}"]
            parts += [self.text[spec.start:loc.last_token(spec).end] for spec in moved]
            parts.append("scale_param { bias_term: true }")
            edits.append(insert_after(loc, bn.node, "layer { " + " ".join(parts) + " }"))
        return edits

    def _bvlc_param_edits(self, bn: LayerView, gone: list[Field]) -> list[Edit]:
        """NVCaffe's batch_norm_param as BVLC reads it alike: its own fields go (to
        `gone`), a use_global_stats: false NVCaffe ignores at TEST goes, an eps below
        NVCaffe's floor becomes the floor. A block left empty goes whole."""
        param = bn.message.batch_norm_param
        low_eps = layer_fields.float32(param.eps) < MIN_EPS
        batch_stats = param.HasField("use_global_stats") and not param.use_global_stats
        edits = []
        for block in bn.find_all("batch_norm_param"):
            if not isinstance(block.value, Message):
                continue
            fields = block.value.fields
            drop = [f for f in fields if f.name in NVCAFFE_FIELDS or
                    (f.name == "use_global_stats" and batch_stats)]
            if len(drop) == len(fields):
                gone.append(block)
                continue
            gone.extend(drop)
            if low_eps:
                edits.extend(replace_value(f, "1e-05") for f in fields if f.name == "eps")
        return edits

    def arrays(self, out_view: NetView) -> dict[str, list[np.ndarray]]:
        """The new weights: every layer of the new net that has weights or needs none.

        Blobs are written in the shapes the net expects (a legacy 4-D blob becomes its
        real shape), so Caffe's exact shape check passes. A layer the input weights lack
        gets nothing: Caffe fills it from its fillers, as it did before.
        """
        changed: dict[str, list[np.ndarray]] = {}
        for target in self.targets.values():
            bias = target.bias if target.bias is not None else np.zeros(target.channels)
            changed[target.layer.name] = [target.weight.astype(np.float32),
                                          bias.astype(np.float32)]
        for convert in self.converts:
            owner = convert.scale or convert.batchnorm
            changed[owner.name] = [a.copy() for a in convert.arrays]
        for conv in self.to_bvlc:
            changed.update(self._bvlc_arrays(conv))
        removed = {self.view.layers[i].name for i in self.removed}
        out_graph = NetGraph(out_view, TEST_STATE)
        out_shapes = infer_graph_shapes(out_graph)
        arrays: dict[str, list[np.ndarray]] = {}
        missing = []
        for lv in out_graph.layers:
            expected = out_shapes.params.get(lv.index)
            if lv.name in changed:
                arrays[lv.name] = changed[lv.name]
            elif lv.name in self.weights and lv.name not in removed:
                blobs = [np.asarray(b, dtype=np.float32) for b in self.weights[lv.name]]
                arrays[lv.name] = reshaped(blobs, expected)
            elif expected == []:
                arrays[lv.name] = []
            else:
                missing.append(lv.name)
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            self.warnings.append(f"{len(missing)} layers have no weights in the input, and "
                                 f"none are written for them (Caffe fills them from their "
                                 f"fillers, as before): {shown}")
        return arrays

    @staticmethod
    def _bvlc_arrays(conv: ToBvlc) -> dict[str, list[np.ndarray]]:
        """BVLC's blobs: mean and variance with scale factor 1 (NVCaffe's as stored;
        SegNet's mean 0 and the variance that makes var + 1e-5 exactly 1, BVLC's default
        eps), and the affine part for the new Scale."""
        stats = conv.stats
        n = stats.mean.size
        if stats.form == SEGNET_FORM:
            mean = np.zeros(n, np.float32)
            var = np.full(n, unit_variance(DEFAULT_EPS), np.float32)
        else:
            mean = np.asarray(stats.mean, np.float32).reshape(-1)
            var = np.asarray(stats.var, np.float32).reshape(-1)
        out = {conv.layer.name: [mean, var, np.ones(1, np.float32)]}
        if conv.scale_name is not None:
            out[conv.scale_name] = [np.asarray(stats.gamma, np.float32).reshape(-1),
                                    np.asarray(stats.beta, np.float32).reshape(-1)]
        return out


def remove_from_layer(loc: Locator, layer: LayerView, fields: list[Field]) -> list[Edit]:
    """`remove_fields`, except that the layer's last fields, when they go and only the
    layer's closing brace follows them on their line, go with the line breaks before
    them: the brace then closes the line above, not a line of its own."""
    body = layer.body
    ids = {id(f) for f in fields}
    k = len(body.fields)
    while k > 1 and id(body.fields[k - 1]) in ids:
        k -= 1
    tail = body.fields[k:]
    after = loc.next_token(loc.last_token(tail[-1])) if tail else None
    if not tail or after is not body.close or "\n" in after.prefix or \
            any(f.name_token.prefix.strip() for f in tail):
        return remove_fields(loc, fields)
    rest = [f for f in fields if not any(f is t for t in tail)]
    start = loc.last_token(body.fields[k - 1]).end
    return remove_fields(loc, rest) + [Edit(start, loc.last_token(tail[-1]).end, "")]
