"""The layer table (bnlint.caffe.layers) against the forward ops and the old type sets."""

from __future__ import annotations

from bnlint.caffe import known, net
from bnlint.caffe.layers import (
    FAMILIES,
    ROLE_DATA,
    ROLE_EVALUATION,
    ROLE_LOSS,
    ROLE_PARAMETRIC,
    TABLE,
    family_of,
    lookup,
    types_with,
)

_NOT_RUN = frozenset({ROLE_DATA, ROLE_LOSS, ROLE_EVALUATION})


def test_every_op_has_a_table_entry_and_every_runnable_rule_an_op():
    from bnlint.forward.executor import OPS

    runnable = {name for name, entry in TABLE.items()
                if entry.shape is not None and not entry.roles & _NOT_RUN}
    assert sorted(set(OPS) - set(TABLE)) == []
    assert sorted(runnable - set(OPS)) == []


def test_entries_are_complete():
    for name, entry in TABLE.items():
        assert entry.name == name
        assert entry.family in FAMILIES
        assert entry.param is None or entry.param.endswith("_param"), name


def test_the_table_knows_every_bvlc_type_and_the_forks():
    assert len(known.BVLC_LAYER_TYPES) == 62
    assert "BatchNorm" in known.BVLC_LAYER_TYPES and "BN" not in known.BVLC_LAYER_TYPES
    assert known.FORK_LAYER_TYPES["BN"] == known.SEGNET
    assert known.FORK_LAYER_TYPES["PriorBox"] == known.SSD
    assert known.PARAMETRIC_LAYER_TYPES == types_with(ROLE_PARAMETRIC)
    assert {"Convolution", "BatchNorm", "Scale", "BN", "Normalize"} <= types_with(ROLE_PARAMETRIC)


def test_roles_give_the_net_views_sets():
    assert "Python" in net.DATA_LAYER_TYPES and "Input" not in net.DATA_LAYER_TYPES
    assert {"Accuracy", "DetectionEvaluate", "SoftmaxWithLoss"} <= net.LOSS_LAYER_TYPES


def test_families_and_macs():
    assert family_of("Convolution") == "convolution"
    assert family_of("BatchNorm") == "normalisation"
    assert family_of("Pooling") == "pooling"
    assert family_of("NoSuchType") == "other"
    with_macs = sorted(name for name, entry in TABLE.items() if entry.macs is not None)
    assert with_macs == ["Convolution", "ConvolutionDepthwise", "Deconvolution", "InnerProduct",
                         "LSTM", "RNN"]
    assert lookup("BatchNorm").fold == "norm" and lookup("InnerProduct").fold == "into"


def test_summary_rows_carry_shapes_params_macs_and_partial_totals():
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import NetState
    from bnlint.caffe.phase import Phase
    from bnlint.caffe.summary import summarise
    from bnlint.source import SourceFile

    text = parse_text(SourceFile("<net>", (
        'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 2 dim: 3 '
        'dim: 8 dim: 8 } } }\n'
        'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { '
        'num_output: 4 kernel_size: 3 } }\n'
        'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n'
        'layer { name: "u" type: "NoSuchType" bottom: "c" top: "u" }\n')))
    summary = summarise(text, NetState(Phase.TEST), {})
    rows = {layer.name: layer for layer in summary.layers}
    assert rows["c"].top_shapes == [(2, 4, 6, 6)]          # the file's own batch
    assert rows["c"].param_count == 4 * 3 * 3 * 3 + 4
    assert rows["c"].macs == 4 * 6 * 6 * 27 == summary.total_macs   # at batch 1
    assert summary.batch_one
    assert rows["bn"].param_count == 9
    assert rows["u"].top_shapes == [None]
    assert summary.partial_layers == ["u"]
    given = summarise(text, NetState(Phase.TEST), {"d": (2, 3, 8, 8)})
    assert not given.batch_one and given.total_macs == 2 * 4 * 6 * 6 * 27
