"""Rules that compare the net with a trained .caffemodel (`bnlint check --weights`).

Weights are matched to layers by name, as Caffe's CopyTrainedLayersFrom does. NumPy
is imported inside the checks: these rules only run when weights were given.
"""

from __future__ import annotations

from bnlint.caffe.layers.batchnorm import batch_norm_blob_count, nvcaffe_batch_norm
from bnlint.lint.diagnostics import Severity
from bnlint.lint.registry import Rule, register_rule

# Blob counts Caffe's layers create, for when shapes cannot be inferred. BatchNorm's
# follows the net's dialect: NVCaffe's has 5 with scale_bias, BVLC's always 3.
_COUNT_BY_TYPE = {"BatchNorm": batch_norm_blob_count, "PReLU": lambda m: 1,
                  "Convolution": lambda m: 1 + bool(m.convolution_param.bias_term),
                  "Deconvolution": lambda m: 1 + bool(m.convolution_param.bias_term),
                  "InnerProduct": lambda m: 1 + bool(m.inner_product_param.bias_term),
                  "Embed": lambda m: 1 + bool(m.embed_param.bias_term),
                  "Scale": lambda m: (1 if len(m.bottom) < 2 else 0)
                  + bool(m.scale_param.bias_term),
                  "Bias": lambda m: 1 if len(m.bottom) < 2 else 0}


def implied_blob_shapes(ctx, layer) -> list[tuple[int, ...]] | None:
    """The blob shapes the net implies for a layer, from shape inference if possible."""
    key = ("params", layer.index)
    if key not in ctx.notes:
        found = None
        for graph in ctx.graphs_of(layer):
            params = ctx.graph_shapes(graph).params.get(layer.index)
            if params is not None:
                found = [tuple(p) for p in params]
                break
        ctx.notes[key] = found
    return ctx.notes[key]


def implied_blob_count(ctx, layer) -> int | None:
    shapes = implied_blob_shapes(ctx, layer)
    if shapes is not None:
        return len(shapes)
    rule = _COUNT_BY_TYPE.get(layer.type)
    return rule(layer.message) if rule else None


class _WeightsRule(Rule):
    needs_weights = True

    def blobs(self, ctx, layer):
        return ctx.weights.get(layer.name) if ctx.weights is not None else None

    def at(self, layer):
        return layer.find("name") or layer.node


@register_rule
class BlobCountMismatch(_WeightsRule):
    """A layer whose number of blobs in the .caffemodel differs from what the net implies.

    Caffe refuses to load it ("Incompatible number of blobs for layer"). Typical
    causes: NVCaffe's BatchNorm stores 5 blobs (scale and bias inside) where BVLC has
    3; a Convolution's `bias_term` changed after training. The count is the dialect's:
    under `nvcaffe` a BatchNorm with `scale_bias: true` (or a scale/bias filler) has 5
    and one without has 3; under BVLC's schema every BatchNorm has 3.

    Bad: a BVLC net whose BatchNorm 'bn1' has 5 blobs in the weights.

    Good: the same number of blobs on both sides.
    """

    code = "W001"
    name = "blob-count-mismatch"
    severity = Severity.ERROR

    def check_layer(self, ctx, layer):
        blobs = self.blobs(ctx, layer)
        if not blobs:
            return
        want = implied_blob_count(ctx, layer)
        if want is not None and want != len(blobs):
            yield self.diag(ctx, f"{layer.type} '{layer.name}' has {len(blobs)} blobs in the "
                            f"weights but the net implies {want} ({len(blobs)} vs. {want}): "
                            f"Caffe refuses to load it", self.at(layer), layer=layer)


@register_rule
class BnZeroScaleFactor(_WeightsRule):
    """A BatchNorm whose scale factor blobs[2] is 0.

    Caffe divides the stored mean and variance by blobs[2], guarding 0 by using 0:
    the layer then normalises with mean 0 and variance 0, i.e. multiplies by
    1/sqrt(eps). Usually a net that was never trained, or a converter that forgot
    the third blob. TensorRT refuses such a layer.

    Bad: blobs[2] = [0].

    Good: blobs[2] = [999.98] (a trained net) or [1] (statistics stored unscaled).

    NVCaffe's BatchNorm never reads blobs[2] at TEST (it is a variance correction its
    training keeps at 1), so under `nvcaffe` there is nothing to report.
    """

    code = "W002"
    name = "bn-zero-scale-factor"
    severity = Severity.WARNING
    layer_types = ("BatchNorm",)

    def check_layer(self, ctx, layer):
        blobs = self.blobs(ctx, layer)
        if nvcaffe_batch_norm(layer.message):
            return
        if blobs and len(blobs) >= 3 and blobs[2].size and float(blobs[2].reshape(-1)[0]) == 0:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' has scale factor blobs[2] = 0: "
                            f"Caffe normalises it with mean 0 and variance 0 (x / sqrt(eps))",
                            self.at(layer), layer=layer)


@register_rule
class BnBadVariance(_WeightsRule):
    """A BatchNorm whose stored variance is negative somewhere.

    `sqrt(var + eps)` is then NaN (or tiny), and every value downstream of that
    channel is garbage. A sign of a broken conversion or a corrupted file.

    Bad: blobs[1] = [0.5, -0.2, ...].

    Good: every variance >= 0.

    The variance is blobs[1] / blobs[2] in BVLC Caffe, blobs[1] as stored in NVCaffe.
    """

    code = "W003"
    name = "bn-bad-variance"
    severity = Severity.ERROR
    layer_types = ("BatchNorm",)

    def check_layer(self, ctx, layer):
        blobs = self.blobs(ctx, layer)
        if not blobs or len(blobs) < 3:
            return
        import numpy as np

        if nvcaffe_batch_norm(layer.message):
            factor = 1.0
        else:
            scale = float(blobs[2].reshape(-1)[0]) if blobs[2].size else 0.0
            factor = 0.0 if scale == 0 else 1.0 / scale
        var = blobs[1].astype(np.float64) * factor
        bad = np.flatnonzero(~(var >= 0))
        if bad.size:
            yield self.diag(ctx, f"BatchNorm '{layer.name}' has a negative variance in "
                            f"{bad.size} channel(s) (first: channel {int(bad[0])}, "
                            f"{float(var[bad[0]]):g})", self.at(layer), layer=layer)


@register_rule
class MissingWeights(_WeightsRule):
    """A layer with parameters that has no blobs in the .caffemodel.

    Caffe then runs it with the values of its fillers (random, or zeros), silently.
    Often a renamed layer: weights are matched by name.

    Bad: the net has "fc8_new", the weights have "fc8".

    Good: the names agree (or the layer is meant to be trained from its fillers).
    """

    code = "W004"
    name = "missing-weights"
    severity = Severity.WARNING

    def check_layer(self, ctx, layer):
        if self.blobs(ctx, layer):
            return
        want = implied_blob_count(ctx, layer)
        if want:
            yield self.diag(ctx, f"{layer.type} '{layer.name}' has {want} parameter blob(s) "
                            f"but none in the weights: Caffe will use its fillers",
                            self.at(layer), layer=layer)


@register_rule
class BlobShapeMismatch(_WeightsRule):
    """A blob whose shape in the .caffemodel differs from what the net implies.

    Caffe refuses to load it ("Cannot copy param ... weights from layer"): a changed
    num_output, kernel size or input size. Legacy 4-D shapes are accepted when they
    pad to the same four dimensions, as Caffe's Blob::ShapeEquals does.

    Bad: conv1 weights (64, 3, 7, 7) for `num_output: 32`.

    Good: (32, 3, 7, 7).
    """

    code = "W005"
    name = "blob-shape-mismatch"
    severity = Severity.ERROR

    def check_layer(self, ctx, layer):
        blobs = self.blobs(ctx, layer)
        shapes = implied_blob_shapes(ctx, layer)
        if not blobs or shapes is None or len(shapes) != len(blobs):
            return
        legacy = getattr(blobs, "legacy", ())
        for i, (blob, want) in enumerate(zip(blobs, shapes)):
            got = tuple(int(d) for d in blob.shape)
            if got == want:
                continue
            if i < len(legacy) and legacy[i] and _legacy_equal(got, want):
                continue
            yield self.diag(ctx, f"{layer.type} '{layer.name}' blob {i} has shape {got} in the "
                            f"weights but the net implies {want}", self.at(layer),
                            layer=layer)


def _legacy_equal(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Caffe's ShapeEquals for legacy blobs: both padded with leading 1s to 4 axes."""
    if len(want) > 4:
        return False
    pad = lambda s: (1,) * (4 - len(s)) + tuple(s)
    return pad(got[-4:] if len(got) > 4 else got) == pad(want)
