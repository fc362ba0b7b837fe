"""Recurrent layers: RNN, LSTM and their building blocks (no shape rules yet)."""

from __future__ import annotations

from bnlint.caffe.layers.table import RECURRENT, ROLE_PARAMETRIC, declare

declare("Recurrent", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="the base of RNN and LSTM (abstract in BVLC)")
declare("RNN", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="a plain recurrent layer over time")
declare("LSTM", RECURRENT, param="recurrent_param", roles=[ROLE_PARAMETRIC],
        doc="long short-term memory over time")
declare("LSTMUnit", RECURRENT, doc="one LSTM step")
