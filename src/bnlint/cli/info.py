"""`bnlint info`: a net's layers with their shapes, parameter counts and MACs.

Descriptive, so it does not stop at the first problem: where a shape cannot be
known (a data layer without --input-shape, a fork layer) it shows "?" and says why
under the table. Shapes and parameters come from `caffe.shapes`, MACs from
`caffe.cost`; NumPy is needed only with --weights.
"""

from __future__ import annotations

import click

from bnlint.cli.options import (check_shape_names, input_shape_option, net_state, phase_option,
                                require_net, stdout_console, weights_option)


def human(number: int) -> str:
    """1234567 -> '1.23 M' (SI prefixes, three significant digits)."""
    for value, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= value:
            return f"{number / value:.3g} {suffix}"
    return str(number)


#: Longest text shown whole in a table cell: the table wraps each cell line by line,
#: which takes time quadratic in its length (a 10 MB layer name took 40 s).
MAX_CELL = 200


def _cell(text: str) -> str:
    if len(text) <= MAX_CELL:
        return text
    return f"{text[:150]}…({len(text):,} characters)…{text[-30:]}"


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "x".join(map(str, shape)) or "scalar"


def _macs_at_batch_one(graph, view, input_shapes: dict) -> tuple[dict[int, int], list[str]]:
    """{layer index: MACs} with every input's batch set to 1 unless --input-shape gives it
    (a file declaring batch 10 would otherwise read ten times the cost of one image),
    and the notes of layers whose count failed."""
    from bnlint.caffe import cost
    from bnlint.caffe import shapes as shape_rules
    from bnlint.caffe.infer import infer_graph_shapes
    from bnlint.caffe.inputs import find_inputs
    from bnlint.errors import ShapeError

    shapes = {blob.name: blob.shape for blob in find_inputs(view, graph.state, input_shapes, 1)
              if blob.shape is not None}
    inferred = infer_graph_shapes(graph, {**shapes, **input_shapes})
    result: dict[int, int] = {}
    notes: list[str] = []
    for lv in graph.layers:
        bottom_shapes = [b.shape if b is not None else None for b in graph.bottoms[lv.index]]
        if lv.index not in inferred.params or any(s is None for s in bottom_shapes):
            continue
        try:
            result[lv.index] = cost.macs(lv.message, bottom_shapes, shape_rules.LayerShapes(
                list(inferred.tops.get(lv.index, [])), inferred.params[lv.index]))
        except ShapeError as err:
            notes.append(err.message)
    return result, notes


@click.command()
@click.argument("net_path", metavar="NET")
@weights_option
@input_shape_option
@phase_option
def command(net_path: str, weights_path: str | None, input_shapes: dict, phase: str) -> None:
    """Show NET's layers: type, bottoms, tops, output shapes, parameters and MACs.

    MACs count the matrix products (Convolution, Deconvolution, InnerProduct) of
    one forward pass at batch 1 (or at the batch --input-shape gives). With --weights,
    says which layers have stored weights.
    """
    from rich.table import Table

    from bnlint.caffe import cost
    from bnlint.caffe import shapes as shape_rules
    from bnlint.caffe.infer import infer_graph_shapes
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import NetGraph, net_view
    from bnlint.errors import ShapeError
    from bnlint.files import read_text

    text = parse_text(read_text(net_path))
    notes: list[str] = []
    if text.problems:
        first = text.problems[0]
        line, col = text.source.line_col(first.start)
        notes.append(f"{net_path}:{line}:{col}: {first.message} ({len(text.problems)} schema "
                     f"problems; shapes assume BVLC Caffe's schema)")
    view = net_view(text)
    require_net(text, view, "info")
    graph = NetGraph(view, net_state(phase))
    notes += [problem.message for problem in graph.problems]
    source_names = [b.name for b in graph.inputs] + [
        name for lv in graph.layers if not lv.bottoms for name in lv.tops]
    check_shape_names(source_names, input_shapes)
    from bnlint.caffe.inputs import with_inferred_inputs

    layer_macs_at, mac_notes = _macs_at_batch_one(graph, view, input_shapes)
    notes += mac_notes
    inferred = infer_graph_shapes(graph, with_inferred_inputs(view, graph.state, input_shapes))
    weights = None
    if weights_path:
        from bnlint.caffe.weights import read_weights

        weights = read_weights(weights_path)

    macs_title = "MACs" if input_shapes else "MACs (batch 1)"
    table = Table()
    for name, justify, wrap in (("#", "right", False), ("layer", "left", True),
                                ("type", "left", False), ("bottoms", "left", True),
                                ("tops", "left", True), ("output shape", "left", False),
                                ("params", "right", False), (macs_title, "right", False)):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=not wrap)
    if weights is not None:
        table.add_column("weights")
    total_params = total_macs = 0
    for position, lv in enumerate(graph.layers):
        tops = inferred.tops.get(lv.index, [])
        params = inferred.params.get(lv.index, [])
        param_count = sum(shape_rules.count(shape) for shape in params)
        layer_macs = layer_macs_at.get(lv.index, 0)
        total_params += param_count
        total_macs += layer_macs
        row = [str(position), _cell(lv.name), _cell(lv.type), _cell(", ".join(lv.bottoms)),
               _cell(", ".join(lv.tops)),
               ", ".join(_shape_text(s) for s in tops),
               f"{param_count:,}" if param_count else "",
               human(layer_macs) if layer_macs else ""]
        if weights is not None:
            row.append("stored" if lv.name in weights and len(weights[lv.name])
                       else "fillers" if params else "")
        table.add_row(*row)
    table.add_section()
    # a layer whose shapes are unknown adds nothing: the totals are lower bounds then
    from bnlint.caffe.known import PARAMETRIC_LAYER_TYPES

    no_rule = {lv.index for lv in inferred.unknown_types}
    unknown = [lv.name for lv in graph.layers if lv.index in no_rule or (
        lv.type in PARAMETRIC_LAYER_TYPES and lv.index not in inferred.params)]
    partial = "+" if unknown else ""
    totals = ["", "total" + (" (partial)" if unknown else ""), f"{len(graph.layers)} layers",
              "", "", "", f"{total_params:,}{partial}", human(total_macs) + partial]
    if weights is not None:
        totals.append("")
    table.add_row(*totals)

    console = stdout_console()
    console.print(f"{net_path} ({graph.state})", highlight=False)
    console.print(table)
    batch_note = "" if input_shapes else " (batch 1; the net's own batch may differ)"
    console.print(f"parameters: {total_params:,}{partial} ({human(total_params * 4)}B as "
                  f"float32); multiply-accumulates: {total_macs:,}{partial}{batch_note}",
                  highlight=False)
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        console.print(f"partial totals: {len(unknown)} layer(s) of unknown shape count as 0 "
                      f"({shown})", highlight=False)
    for lv, err in inferred.errors:
        notes.append(err.message)
    for lv in inferred.unknown_types:
        notes.append(f"layer '{lv.name}': type '{lv.type}' has no shape rule; the shapes "
                     f"below it are unknown")
    data_tops = [b.name for lv in graph.layers if not lv.bottoms
                 for b in graph.tops[lv.index] if b.shape is None and b.consumers]
    if data_tops:
        notes.append(f"shapes of {', '.join(data_tops)} come from a dataset; pass "
                     f"--input-shape {data_tops[0]}=N,C,H,W to see the rest")
    for note in notes:
        click.echo(f"bnlint: note: {note}", err=True)
