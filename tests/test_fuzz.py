"""Fuzzing: bad input never crashes bnlint and never loses data.

bnlint runs in CI and pre-commit on whatever people commit, so every input must end
in exit 0, 1 or 2 with a message, never in a traceback or an "internal error"
(exit 3). Inputs are generated prototxt texts, arbitrary text and bytes, and
mutations of real files (bytes and tokens deleted, duplicated and swapped,
truncation, random unicode, NUL bytes, huge numbers, very long lines, deep
nesting). They go through the parser (which may raise ParseError only, and must
render back byte for byte when it parses) and through every command of the CLI.

Hypothesis is derandomized and keeps no database, so a CI run is reproducible and
bounded; the whole file runs in well under a minute.

`COMMAND_ARGS` is the one table of how each command is run; a command that is not
registered in `bnlint.cli.COMMANDS` yet is skipped, so adding one is one line there.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, FIXTURES, needs_shared

from bnlint.errors import BnlintError, ParseError
from bnlint.source import SourceFile
from bnlint.syntax import parse, render
from bnlint.syntax.lexer import EOF, tokenize

# --- the command table ----------------------------------------------------------------------

# Every way the fuzz runs a command: {net}, {weights} and {out} are filled in per run,
# and a "-" argument reads the input from stdin. One line per command.
COMMAND_ARGS: dict[str, list[list[str]]] = {
    "check": [["check", "{net}"],
              ["check", "--format", "json", "--weights", "{weights}", "{net}"],
              ["check", "--fix", "--unsafe-fixes", "{net}"],
              ["check", "--format", "sarif", "-"]],
    "convert": [["convert", "{net}"],
                ["convert", "{net}", "-o", "{out}/converted.caffemodel"],
                ["convert", "-", "--to", "json"]],
    "to-deploy": [["to-deploy", "{net}", "-o", "{out}/deploy.prototxt"],
                  ["to-deploy", "{net}", "--weights", "{weights}"]],
    "upgrade": [["upgrade", "{net}", "-o", "{out}/upgraded.prototxt"],
                ["upgrade", "{net}"]],
    "forward": [["forward", "{net}", "--weights", "{weights}"]],
    "verify": [["verify", "{net}", "{net}", "--weights", "{weights}", "--trials", "1"]],
    "fold": [["fold", "{net}", "--weights", "{weights}", "-o", "{out}/folded.prototxt"]],
    "info": [["info", "{net}", "--weights", "{weights}"]],
    "export": [["export", "onnx", "{net}", "--weights", "{weights}", "-o", "{out}/net.onnx"]],
    "draw": [["draw", "{net}", "-o", "{out}/net.html"],
             ["draw", "{net}", "--diff", "-", "--weights", "{weights}"]],
}
# Commands that run the net in NumPy: a mutated shape can ask for terabytes, so they
# run under an address-space cap (see `memory_cap`).
RUNS_THE_NET = {"forward", "verify", "fold", "export"}


def registered() -> set[str]:
    from bnlint.cli import COMMANDS

    return set(COMMANDS)


def active_rows(only_with: str | None = None) -> list[tuple[str, list[str]]]:
    """(command, argv template) for every command; `only_with` keeps the rows that use
    that placeholder (e.g. "{weights}")."""
    rows = []
    for name, variants in COMMAND_ARGS.items():
        for argv in variants:
            if only_with is None or any(only_with in a for a in argv):
                rows.append((name, argv))
    return rows


# --- running the CLI in-process ----------------------------------------------------------------

def invoke(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    """Run `bnlint ARGV` in-process with the given stdin; (exit code, stdout, stderr).

    Not the run_cli fixture: Hypothesis runs many examples per test function, and
    function-scoped fixtures are not reset between them.
    """
    from bnlint.cli import main

    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    mine = (io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
            io.TextIOWrapper(out_buf, encoding="utf-8", write_through=True),
            io.TextIOWrapper(err_buf, encoding="utf-8", errors="backslashreplace",
                             write_through=True))
    sys.stdin, sys.stdout, sys.stderr = mine
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for stream in mine:
            stream.flush()
            stream.detach()          # keep the buffers open for getvalue()
    out, err = out_buf.getvalue(), err_buf.getvalue()
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def assert_clean_exit(argv: list[str], code: int, out: str, err: str) -> None:
    """The contract of every run on bad input: 0, 1 or 2, a message on 2, no crash."""
    shown = f"bnlint {' '.join(argv)}\n--- exit {code}, stderr:\n{err[-2000:]}"
    assert code in (0, 1, 2), shown
    assert "Traceback (most recent call last)" not in out + err, shown
    assert "internal error" not in out + err, shown
    if code == 2:
        assert err.strip(), shown


@contextlib.contextmanager
def memory_cap(extra: int = 1 << 31):
    """Cap this process's address space at its current size plus `extra` bytes.

    A mutated shape can make a NumPy forward ask for terabytes; under the cap that is
    a MemoryError (exit 2), not the CI machine swapping or the OOM killer.
    """
    try:
        import resource

        size = int(next(line.split()[1] for line in open("/proc/self/status")
                        if line.startswith("VmSize:"))) * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    cap = size + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def stray_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def run_all_commands(data: bytes, work: Path, weights: Path,
                     rows: list[tuple[str, list[str]]] | None = None) -> None:
    """Feed `data` as the net to every registered command; check the exit contract.

    The input is rewritten before each run; afterwards it must be byte-identical
    (except under --fix, which may rewrite it) and the folder must hold no
    temporary file.
    """
    net = work / "input.prototxt"
    out = work / "out"
    out.mkdir(exist_ok=True)
    for name, template in rows if rows is not None else active_rows():
        net.write_bytes(data)
        argv = [a.format(net=net, weights=weights, out=out) for a in template]
        stdin = data if "-" in argv else b""
        cap = memory_cap() if name in RUNS_THE_NET else contextlib.nullcontext()
        with cap:
            code, stdout, stderr = invoke(argv, stdin)
        assert_clean_exit(argv, code, stdout, stderr)
        if "--fix" not in argv:
            assert net.read_bytes() == data, f"bnlint {' '.join(argv)} changed its input"
        assert stray_temporaries(work) == [] and stray_temporaries(out) == [], argv


# --- inputs: bases, a net with weights, mutations -------------------------------------------

FIXTURE_BASES = sorted((FIXTURES / "examples").glob("*.prototxt")) + [
    FIXTURES / "rules" / name for name in (
        "bn01x_scale.prototxt", "n006_legacy.prototxt", "e001_syntax.prototxt",
        "solver_embedded_net.prototxt", "n007_shapes.prototxt")
    if (FIXTURES / "rules" / name).is_file()]
# Small and varied: a deploy net, a V1 net, a BatchNorm train/test net, an OpenCV test
# net, a solver.
CORPUS_BASES = [CORPUS / rel for rel in (
    "caffe/cifar10__cifar10_quick.prototxt",
    "caffe/mnist__lenet@V1_pre-e6c80da.prototxt",
    "caffe/cifar10__cifar10_full_sigmoid_train_test_bn.prototxt",
    "opencv_extra_textonly/layer_batch_norm_local_stats.prototxt",
    "caffe/bvlc_googlenet__quick_solver.prototxt",
) if (CORPUS / rel).is_file()]

WEIGHTS_NET = """name: "w"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "c" top: "fc" inner_product_param { num_output: 3 } }
"""


def weights_arrays():
    import numpy as np

    f = np.float32
    return {"conv": [np.ones((2, 3, 1, 1), f)],
            "bn": [np.zeros(2, f), np.ones(2, f), np.array([999.98], f)],
            "scale": [np.ones(2, f), np.zeros(2, f)],
            "fc": [np.full((3, 32), 0.5, f), np.zeros(3, f)]}


def good_caffemodel() -> bytes:
    from bnlint.caffe.weights import caffemodel_bytes

    return caffemodel_bytes(None, weights_arrays())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def weights_file(work) -> Path:
    path = work / "weights.caffemodel"
    path.write_bytes(good_caffemodel())
    return path


HUGE_NUMBERS = ["1e999999", "-1e999999", "99999999999999999999999", "-99999999999999999999999",
                "18446744073709551616", "2147483648", "-2147483649", "4294967296",
                "0x7fffffffffffffffff", "1e-999999", "nan", "-inf", "0" * 400 + "1",
                "9" * 5000]
INSERTS = ["\x00", "{", "}", "<", ">", "[", "]", ":", ",", ";", "\"", "'", "\\", "#", "-",
           "\ufeff", "\u2028", "\r", "\t", "layer {", "}}}}", " top: \"data\"",
           " bottom: \"data\"", " dim: 0", " dim: -1", " kernel_size: 0", " stride: 0",
           " group: 0", " num_output: 0", " pad: 99999999", " type: \"Python\"",
           " type: \"Reshape\"", " phase: TEST", " include { phase: TRAIN }",
           " use_global_stats: false", " axis: -99", " name: \"\"", " dim: 100000"]


@st.composite
def mutations(draw, bases: list[Path]) -> bytes:
    """A base file with 1 to 4 mutations applied, as bytes (possibly not UTF-8)."""
    base = draw(st.sampled_from(bases))
    data = base.read_bytes()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([
            "delete", "duplicate", "swap", "truncate", "token", "unicode", "bytes", "nul",
            "insert", "huge", "long_line", "nesting"]))
        data = apply_mutation(draw, kind, data)
    return data


def apply_mutation(draw, kind: str, data: bytes) -> bytes:
    n = len(data)
    at = draw(st.integers(0, n))
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)):]
    if kind == "duplicate":
        return data[:at] + data[at:at + draw(st.integers(1, 256))] + data[at:]
    if kind == "swap":
        other = draw(st.integers(0, n))
        a, b = sorted((at, other))
        width = draw(st.integers(1, 32))
        if b - a < width:
            return data
        return (data[:a] + data[b:b + width] + data[a + width:b] + data[a:a + width]
                + data[b + width:])
    if kind == "truncate":
        return data[:at]
    if kind == "token":
        return token_mutation(draw, data)
    if kind == "unicode":
        return data[:at] + draw(st.text(min_size=1, max_size=16)).encode("utf-8") + data[at:]
    if kind == "bytes":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "nul":
        return data[:at] + b"\x00" * draw(st.integers(1, 3)) + data[at:]
    if kind == "insert":
        return data[:at] + draw(st.sampled_from(INSERTS)).encode("utf-8") + data[at:]
    if kind == "huge":
        return replace_a_number(draw, data, draw(st.sampled_from(HUGE_NUMBERS)))
    if kind == "long_line":
        filler = draw(st.sampled_from([b"x", b" ", b"# ", b"\"a", b"1"]))
        # up to 50,000: the text report prints a finding's whole line (see
        # test_resources.py), so longer lines only make the captured output huge
        return data[:at] + filler * draw(st.integers(1_000, 50_000)) + data[at:]
    if kind == "nesting":
        depth = draw(st.integers(1, 3_000))
        opener = draw(st.sampled_from([b"a { ", b"a < ", b"a: [{ ", b"layer { "]))
        closer = {b"a { ": b"} ", b"a < ": b"> ", b"a: [{ ": b"}] ", b"layer { ": b"} "}[opener]
        closed = draw(st.booleans())
        return data[:at] + opener * depth + (closer * depth if closed else b"") + data[at:]
    raise AssertionError(kind)


def token_mutation(draw, data: bytes) -> bytes:
    """Swap, delete or duplicate whole tokens, keeping the trivia in place."""
    try:
        tokens = [t for t in tokenize(SourceFile("<fuzz>", data.decode("utf-8")))
                  if t.kind != EOF]
    except (ParseError, UnicodeDecodeError):
        return data
    if len(tokens) < 2:
        return data
    texts = [t.text for t in tokens]
    i = draw(st.integers(0, len(texts) - 1))
    j = draw(st.integers(0, len(texts) - 1))
    op = draw(st.sampled_from(["swap", "delete", "duplicate"]))
    if op == "swap":
        texts[i], texts[j] = texts[j], texts[i]
    elif op == "delete":
        texts[i] = ""
    else:
        texts[i] = texts[i] + " " + texts[j]
    text = data.decode("utf-8")
    parts, pos = [], 0
    for tok, new in zip(tokens, texts):
        parts.append(text[pos:tok.offset])
        parts.append(new)
        pos = tok.end
    parts.append(text[pos:])
    return "".join(parts).encode("utf-8")


def replace_a_number(draw, data: bytes, number: str) -> bytes:
    import re

    spans = [m.span() for m in re.finditer(rb"(?<=[:\s])-?[0-9][0-9.eE+-]*", data)]
    if not spans:
        return data + b"\ndim: " + number.encode()
    a, b = draw(st.sampled_from(spans))
    return data[:a] + number.encode() + data[b:]


# Generated prototxt: valid syntax, arbitrary structure over real and unknown names.
FIELD_NAMES = ["name", "type", "bottom", "top", "layer", "layers", "input", "input_dim",
               "input_shape", "dim", "shape", "input_param", "convolution_param",
               "num_output", "kernel_size", "stride", "pad", "group", "dilation",
               "pooling_param", "pool", "global_pooling", "batch_norm_param",
               "use_global_stats", "eps", "scale_param", "bias_term", "include", "exclude",
               "phase", "stage", "param", "lr_mult", "blobs", "data", "num", "channels",
               "inner_product_param", "reshape_param", "concat_param", "axis",
               "slice_param", "slice_point", "eltwise_param", "operation", "coeff",
               "crop_param", "offset", "net_param", "base_lr", "ceil_mode", "state",
               "python_param", "module", "weight_filler", "value", "unknown_field"]
LAYER_TYPES = ["Input", "Convolution", "Deconvolution", "BatchNorm", "Scale", "ReLU",
               "Pooling", "InnerProduct", "Concat", "Eltwise", "Softmax", "Reshape",
               "Slice", "Crop", "Python", "Data", "Flatten", "Dropout", "Bias", "Split",
               "NoSuchLayer"]
scalar_values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(HUGE_NUMBERS + ["TRAIN", "TEST", "MAX", "AVE", "SUM", "true", "false",
                                    "True", "t", "f", "0x10", "-0", ".5", "1.", "1e5"]),
    st.sampled_from(LAYER_TYPES).map(lambda t: f'"{t}"'),
    st.text(alphabet="abcxyz019_/-. ", max_size=8).map(lambda s: f'"{s}"'),
    st.sampled_from(['"\\377\\x41"', "'single'", '"caf\u00e9"', '"a" "b"', '""']),
)
field_names = st.one_of(st.sampled_from(FIELD_NAMES),
                        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True))
separators = st.sampled_from([" ", "\n", "  ", "\n  ", " # comment\n", ",", ";", "\r\n"])


def message_fields(children):
    def field(parts):
        name, value, sep = parts
        return f"{name}{value}{sep}"
    return st.lists(st.tuples(field_names, children, separators).map(field), max_size=5) \
        .map("".join)


prototxt_texts = st.recursive(
    message_fields(st.one_of(
        scalar_values.map(lambda v: f": {v}"),
        st.lists(scalar_values, min_size=1, max_size=4).map(lambda vs: f": [{', '.join(vs)}]"))),
    lambda inner: message_fields(st.one_of(
        scalar_values.map(lambda v: f": {v}"),
        inner.map(lambda body: f" {{ {body}}}"),
        inner.map(lambda body: f": < {body}>"),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda bodies: ": [" + ", ".join("{ " + b + "}" for b in bodies) + "]"))),
    max_leaves=25,
)

# CI runs a fixed, derandomized sample. `benchmarks/fuzz_long.py` sets
# BNLINT_FUZZ_EXAMPLES (and pytest's --hypothesis-seed) to run the same tests long,
# randomized, to find the next failures.
LONG_EXAMPLES = int(os.environ.get("BNLINT_FUZZ_EXAMPLES", "0") or 0)


def examples(ci: int) -> int:
    """Examples per test: `ci` in CI, BNLINT_FUZZ_EXAMPLES in a long run."""
    return LONG_EXAMPLES or ci


FAST = settings(derandomize=not LONG_EXAMPLES, database=None, deadline=None,
                max_examples=examples(60),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
PARSER = settings(FAST, max_examples=examples(300))


# --- the parser -----------------------------------------------------------------------------------

def parse_or_parse_error(text: str) -> None:
    """ParseError is the only exception; a parsed text renders back byte for byte."""
    try:
        doc = parse(text, "<fuzz>")
    except ParseError as err:
        assert isinstance(err, BnlintError) and err.message
        str(err)                     # the position must be showable
        return
    assert render(doc) == text


@PARSER
@given(st.text(max_size=300))
def test_parser_on_arbitrary_text(text):
    parse_or_parse_error(text)


@PARSER
@given(st.text(alphabet="{}<>[]:,;\"'#-+.0123456789eEx_ab \n\r\t\\", max_size=200))
def test_parser_on_protobuf_punctuation(text):
    parse_or_parse_error(text)


@PARSER
@given(prototxt_texts)
def test_parser_on_generated_prototxt(text):
    doc = parse(text, "<generated>")          # valid by construction: must parse
    assert render(doc) == text


@PARSER
@given(mutations(FIXTURE_BASES))
def test_parser_on_mutated_fixtures(data):
    parse_or_parse_error(data.decode("utf-8", "replace"))


@needs_shared
@PARSER
@given(mutations(CORPUS_BASES or FIXTURE_BASES))
def test_parser_on_mutated_corpus(data):
    parse_or_parse_error(data.decode("utf-8", "replace"))


@pytest.mark.parametrize("text", [
    "a {" * 20_000 + "}" * 20_000,
    "a: [" * 5_000,
    "a: " + "9" * 100_000,
    "a: \"" + "x" * 100_000,
    "\x00" * 1000,
    "\ufeff" * 3,
    "a: 1e999999 b: -99999999999999999999999",
    "# " + "x" * 1_000_000,
])
def test_parser_on_extremes(text):
    parse_or_parse_error(text)


# --- the CLI --------------------------------------------------------------------------------------

def test_command_table_matches_the_cli(work, weights_file):
    """Each registered command's rows run on a good net without a usage error.

    A wrong row would make the fuzz below test nothing but click's argument parser;
    when a command's options change, fix its line in COMMAND_ARGS.
    """
    net = work / "good.prototxt"
    out = work / "out"
    out.mkdir(exist_ok=True)
    for name, template in active_rows():
        net.write_text(WEIGHTS_NET)
        argv = [a.format(net=net, weights=weights_file, out=out) for a in template]
        code, stdout, stderr = invoke(argv, WEIGHTS_NET.encode() if "-" in argv else b"")
        assert "Usage:" not in stderr and "No such option" not in stderr, (argv, stderr)
        assert_clean_exit(argv, code, stdout, stderr)


@FAST
@given(mutations(FIXTURE_BASES))
def test_cli_on_mutated_fixtures(work, weights_file, data):
    run_all_commands(data, work, weights_file)


@needs_shared
@FAST
@given(mutations(CORPUS_BASES or FIXTURE_BASES))
def test_cli_on_mutated_corpus(work, weights_file, data):
    run_all_commands(data, work, weights_file)


@settings(FAST, max_examples=examples(40))
@given(prototxt_texts)
def test_cli_on_generated_prototxt(work, weights_file, text):
    run_all_commands(text.encode("utf-8"), work, weights_file)


@settings(FAST, max_examples=examples(30))
@given(st.binary(max_size=400))
def test_cli_on_arbitrary_bytes(work, weights_file, data):
    run_all_commands(data, work, weights_file)


@st.composite
def broken_weights(draw) -> bytes:
    """The good .caffemodel with byte damage, or with a blob's data, shape or count broken."""
    import numpy as np

    from bnlint.caffe.schema import default_schema

    data = good_caffemodel()
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["delete", "duplicate", "swap", "truncate", "bytes"]))
            data = apply_mutation(draw, kind, data)
        return data
    net = default_schema().message_class("NetParameter")()
    net.ParseFromString(data)
    layer = net.layer[draw(st.integers(0, len(net.layer) - 1))]
    blob = layer.blobs[draw(st.integers(0, len(layer.blobs) - 1))]
    kind = draw(st.sampled_from(["nan", "dims", "legacy", "drop", "extra", "no_blobs",
                                 "double", "rename"]))
    if kind == "nan":
        values = list(blob.data)
        values[draw(st.integers(0, len(values) - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        blob.ClearField("data")
        blob.data.extend(values)
    elif kind == "dims":
        blob.shape.dim.append(draw(st.sampled_from([0, 2, -1, 2**40])))
    elif kind == "legacy":
        blob.num, blob.channels = draw(st.integers(-2, 5)), draw(st.integers(-2, 5))
    elif kind == "drop":
        del blob.data[-1]
    elif kind == "extra":
        blob.data.extend([1.0] * draw(st.integers(1, 10)))
    elif kind == "no_blobs":
        del layer.blobs[:]
    elif kind == "double":
        blob.double_data.extend(np.arange(draw(st.integers(1, 40)), dtype=np.float64))
    else:
        layer.name = draw(st.sampled_from(["", "other", "conv", "\u00e9", "bn" * 1000]))
    return net.SerializeToString()


@settings(FAST, max_examples=examples(50))
@given(broken_weights())
def test_cli_on_broken_weights(work, data):
    """Every command that reads --weights, on a good net with damaged weights."""
    weights = work / "broken.caffemodel"
    rows = [(name, [a for a in argv]) for name, argv in active_rows(only_with="{weights}")
            if "-" not in argv]
    net_bytes = WEIGHTS_NET.encode()
    for name, template in rows:
        weights.write_bytes(data)
        run_all_commands(net_bytes, work, weights, rows=[(name, template)])
        assert weights.read_bytes() == data


@pytest.mark.parametrize("name", sorted(RUNS_THE_NET))
def test_huge_blobs_are_a_clear_error_not_a_crash(work, weights_file, name):
    """A shape of terabytes is exit 2 with a message (it was an internal MemoryError)."""
    net = ('layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 100000 '
           'dim: 100000 dim: 100000 } } }\n'
           'layer { name: "r" type: "ReLU" bottom: "d" top: "r" }\n')
    rows = [(n, argv) for n, argv in active_rows() if n == name]
    run_all_commands(net.encode(), work, weights_file, rows=rows)


# --- crashes found by this fuzz: regression tests, and reproducers (xfail) of open ones ------

def test_a_net_of_input_layers_alone(work, weights_file):
    """Found by benchmarks/fuzz_long.py (seed 1002): `export onnx` of a net whose
    outputs are unread Input tops raised KeyError."""
    text = ('layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 dim: 4 '
            'dim: 8 dim: 8 } } }\nlayer { name: "b" type: "Input" top: "b" input_param { '
            'shape { dim: 1 dim: 4 dim: 6 dim: 6 } } }')
    run_all_commands(text.encode(), work, weights_file)


@pytest.mark.parametrize("text", [
    'layer: [{ }, { }]\n',
    'layer: [{ name: "a" type: "ReLU" }, { name: "a" type: "ReLU" }]\n',
    'layer: [{ name: "d" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }, '
    '{ name: "bn" type: "BatchNorm" bottom: "x" top: "x" '
    'batch_norm_param { use_global_stats: false } }]\n',
], ids=["empty", "duplicate-name", "batchnorm"])
def test_layers_written_as_a_list(work, weights_file, text):
    """Found by this fuzz: rules looking into a layer written as a list item crashed
    (AttributeError: 'ListValue' object has no attribute 'get')."""
    run_all_commands(text.encode(), work, weights_file)


# Blobs over Caffe's limits (Blob::Reshape: 32 axes, kMaxBlobAxes, and at most INT_MAX
# elements): found by this fuzz as NumPy's ValueError escaping as an internal error
# ("array is too big", "maximum supported dimension ... 64"). Refused up front by
# bnlint.caffe.limits, naming the layer and the blob. case -> (net, layer, blob).
NETS_OVER_CAFFE_LIMITS = {
    "count-over-int64": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                         'dim: 9223372036854775807 dim: 9223372036854775807 } } }\n'
                         'layer { name: "r" type: "ReLU" bottom: "d" top: "r" }\n', "d", "d"),
    "filler-over-int64": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                          'dim: 1 dim: 3 } } }\nlayer { name: "e" type: "Embed" bottom: "d" '
                          'top: "e" embed_param { num_output: 4294967295 '
                          'input_dim: 4294967295 } }\n', "e", "e"),
    "weights-over-int-max": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                             'dim: 1 dim: 3 } } }\nlayer { name: "ip" type: "InnerProduct" '
                             'bottom: "d" top: "ip" inner_product_param { '
                             'num_output: 2147483647 } }\n', "ip", "0"),
    "65-axes": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                + "dim: 1 " * 65 + '} } }\nlayer { name: "r" type: "ReLU" bottom: "d" '
                'top: "r" }\n', "d", "d"),
    "33-axes": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                + "dim: 1 " * 33 + '} } }\nlayer { name: "r" type: "ReLU" bottom: "d" '
                'top: "r" }\n', "d", "d"),
    "dims-int-max": ('layer { name: "d" type: "Input" top: "d" input_param { shape { '
                     'dim: 2147483647 dim: 2147483647 } } }\n'
                     'layer { name: "r" type: "ReLU" bottom: "d" top: "r" }\n', "d", "d"),
}


@pytest.mark.parametrize("case", sorted(NETS_OVER_CAFFE_LIMITS))
@pytest.mark.parametrize("name", sorted(RUNS_THE_NET))
def test_blobs_over_caffe_limits(work, weights_file, name, case):
    rows = [(n, argv) for n, argv in active_rows() if n == name]
    run_all_commands(NETS_OVER_CAFFE_LIMITS[case][0].encode(), work, weights_file, rows=rows)


@pytest.mark.parametrize("case", sorted(NETS_OVER_CAFFE_LIMITS))
@pytest.mark.parametrize("command", ["forward", "info", "check"])
def test_blobs_over_caffe_limits_name_layer_and_blob(work, case, command):
    text, layer, blob = NETS_OVER_CAFFE_LIMITS[case]
    net = work / "net.prototxt"
    net.write_text(text)
    code, out, err = invoke([command, str(net)])
    # info shows what it could infer and notes where it stopped
    assert code == {"check": 1, "forward": 2}.get(command, code) and code in (0, 1, 2), err
    blob_words = f"blob {blob}" if blob.isdigit() else f"blob '{blob}'"
    assert f"layer '{layer}', {blob_words}" in out + err, out + err
    assert ("kMaxBlobAxes" if "axes" in case else "INT_MAX") in out + err


@pytest.mark.parametrize("value", ['"a"', "0"])
def test_to_deploy_on_a_value_without_colon(work, weights_file, value):
    text = ('layer { name: "d" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
            'dim: 4 dim: 4 } } }\nlayer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" '
            f'batch_norm_param {{ use_global_stats {value} }} }}\n')
    rows = [(n, argv) for n, argv in active_rows() if n == "to-deploy"]
    run_all_commands(text.encode(), work, weights_file, rows=rows)
