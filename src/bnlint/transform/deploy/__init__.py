"""`bnlint to-deploy`: the deploy net of a train/test net, as edits of its own text.

What the pass does, in the order Caffe would see it:

1. The view Caffe's FilterNet gives under the state (default TEST, `--stage` adds
   stages): layers not included are removed, and `include`/`exclude` go from the
   survivors (they mean nothing once the choice is made). Of a TRAIN and a TEST
   variant of one layer, the TEST one survives. A legacy (V0/V1) net is first
   upgraded to the current format (`transform.upgrade`, net-level inputs kept):
   the new layers must be `layer` entries, and Caffe refuses a net mixing both.
2. Data layers become one `Input` layer, named like the first data layer and put
   where it was, with one top per input (labels are not inputs, see
   `bnlint.caffe.inputs`) and one `shape` per top. Input layers already in the net
   and net-level `input` fields stay as written.
3. On the blob graph: layers fed by labels are removed, then loss, accuracy and
   evaluation layers, then, backwards from the outputs, every layer whose results
   only fed removed layers (label slicing, the auxiliary classifiers of GoogLeNet).
   The outputs are the net's unconsumed blobs plus the predictions of the losses
   with the largest loss weight (auxiliary losses weigh less and their branches go;
   with no loss at all, the inputs of accuracy/evaluation layers). A SoftmaxWithLoss
   on such a prediction becomes a `Softmax` named "prob" with top "prob" (with
   several, "<blob>_prob"), unless a Softmax already reads it or `softmax=False`.
4. BatchNorm: `use_global_stats: true` written (the deploy convention, whatever the
   phase), `eps` left exactly as written or unwritten, `moving_average_fraction` removed.
5. Fillers (fields of type FillerParameter in the layer parameters bnlint's schema
   knows: weight_filler, bias_filler, Scale's and PReLU's filler, ...) removed
   unless `keep_fillers`; fork parameters are not touched.
6. `param` blocks: removed, except that weight sharing must survive: the blocks up
   to the last one with a `name` stay (positions matter: param[1] is the bias),
   without lr_mult and decay_mult, which mean nothing without a solver.
7. Net level: `state` is removed (its phase, stages and level were applied in 1);
   `force_backward`, `debug_info` and the net name stay (they are run-time choices).

Layer names never change: a .caffemodel's blobs are matched to layers by name.
Fork fields and fork layers (SSD's DetectionOutput, PriorBox, ...) pass through
byte for byte. An already-deploy net comes out unchanged.

Before returning, the result is parsed, run through the pass again (which must
change nothing), and wired as a blob graph (no unknown bottoms).

`compare_deploy` (`--check`) and `layers_missing_weights` (`--weights`) compare the
result with a hand-written deploy net and with a .caffemodel.

The options and result (`options`), the plan (`plan`) and the comparisons of
`--check` and `--weights` (`compare`) are one module each; this module runs the plan
and checks its output.
"""

from __future__ import annotations

from bnlint.caffe.load import NET, TextFile
from bnlint.caffe.net import NetGraph, NetState, net_view
from bnlint.caffe.netfile import reparse
from bnlint.caffe.phase import Phase
from bnlint.errors import BnlintError, ParseError
from bnlint.syntax.edits import apply_edits
from bnlint.transform import UnsafeRewriteError, collapse_blank_lines
from bnlint.transform.deploy.compare import (INPUT_KEY, LAYER_FIELD, LAYER_ORDER, NET_FIELD,
                                             ONLY_DEPLOY, ONLY_GENERATED, Difference,
                                             caffemodel_blob_counts, compare_deploy,
                                             layers_missing_weights, reference_input_shapes)
from bnlint.transform.deploy.options import DeployOptions, DeployResult, Shape
from bnlint.transform.deploy.plan import DeployPlan


def to_deploy(text_file: TextFile, options: DeployOptions | None = None, *,
              check: bool = True) -> DeployResult:
    """The deploy form of a net file, as text; BnlintError when it cannot be made.

    With `check` (the default) the result has passed the safe-mode checks.
    """
    options = options or DeployOptions()
    if text_file.kind != NET:
        raise BnlintError("to-deploy takes a net prototxt, not a solver (give the net file "
                          "the solver's `net:` names)", path=text_file.path)
    notes: list[str] = []
    working = text_file
    if len(text_file.message.layers):
        from bnlint.transform.upgrade import upgrade_text

        upgraded = upgrade_text(text_file, net_inputs=False)
        notes.append("legacy net upgraded to the current format first: "
                     + "; ".join(upgraded.notes))
        working = reparse(text_file, upgraded.text)
    plan = DeployPlan(working, options)
    plan.run()
    try:
        text = apply_edits(working.source.text, collapse_blank_lines(working.source.text,
                                                                     plan.edits))
    except ValueError as err:       # two edits of one span: a layout the plan cannot handle
        raise UnsafeRewriteError(f"to-deploy of {text_file.path}: {err}") from None
    result = DeployResult(text, notes + plan.notes, plan.shapes, plan.state)
    if check:
        check_deploy(text_file, result, options)
    return result


# --- safe mode ---------------------------------------------------------------------------


def check_deploy(original: TextFile, result: DeployResult, options: DeployOptions) -> None:
    """Parses, is stable under a second run, and wires up without unknown bottoms."""
    try:
        out = reparse(original, result.text)
    except ParseError as err:
        raise UnsafeRewriteError(f"to-deploy of {original.path} produced text that does not "
                                 f"parse: {err}") from None
    again = to_deploy(out, options, check=False)
    if again.text != result.text:
        raise UnsafeRewriteError(f"to-deploy of {original.path} is not stable: a second run "
                                 f"changes its output")
    graph = NetGraph(net_view(out), NetState(Phase.TEST))
    broken = [p for p in graph.problems if p.code == "unknown-bottom"]
    if broken:
        raise UnsafeRewriteError(f"to-deploy of {original.path} produced a net Caffe refuses: "
                                 f"{broken[0].message}")


__all__ = ["INPUT_KEY", "LAYER_FIELD", "LAYER_ORDER", "NET_FIELD", "ONLY_DEPLOY",
           "ONLY_GENERATED", "DeployOptions", "DeployResult", "Difference", "Shape",
           "caffemodel_blob_counts", "compare_deploy", "layers_missing_weights",
           "reference_input_shapes", "to_deploy"]
