"""Parse speed: bnlint's lossless parser against protobuf's text_format and protoc.

Run as `python benchmarks/parse.py [--repeat N] [--runs N] [--weights-mb MB] [--profile]`.
In-process times are the best of N after a warm-up (time.perf_counter); whole-
process times are the median of N runs. Uses the corpus at ../shared/corpus
relative to the repository and exits 0 with a message when it is absent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
PROTO_DIR = REPO / "proto"
LARGEST = (
    "SENet/SENet-154.prototxt",
    "SENet/SE-ResNet-152.prototxt",
    "DenseNet-Caffe/DenseNet_201.prototxt",
    "caffe/bvlc_googlenet__train_val.prototxt",
)
GENERATED = "<generated 2000 layers>"

try:
    import bnlint  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))


# --- helpers ------------------------------------------------------------------------------

def best_of(fn, repeat: int, warmup: int = 1) -> float:
    """Best wall time of `fn()` in seconds over `repeat` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def median_run(argv: list[str], runs: int, stdin_path: Path | None = None,
               env: dict | None = None) -> tuple[float, int, bytes]:
    """Median wall time of a whole process (one warm-up run), its exit code and stdout."""
    def once() -> tuple[float, subprocess.CompletedProcess]:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            start = time.perf_counter()
            done = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=REPO)
            return time.perf_counter() - start, done
        finally:
            if stdin_path:
                stdin.close()

    _, done = once()
    times = [once()[0] for _ in range(runs)]
    return statistics.median(times), done.returncode, done.stdout


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None or den == 0 else f"{num / den:.2f}x"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print an aligned table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    print(f"\n{title}" if title else "")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def bnlint_command() -> tuple[list[str], dict]:
    """The installed `bnlint` script next to this Python or on PATH, else `python -m bnlint`."""
    env = dict(os.environ)
    script = (shutil.which("bnlint", path=str(Path(sys.executable).parent))
              or shutil.which("bnlint"))
    if script:
        return [script], env
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "bnlint"], env


# --- inputs -------------------------------------------------------------------------------

def generated_net(n_layers: int = 2000) -> str:
    """A ResNet-style deploy net: an Input layer, conv/BatchNorm/Scale/ReLU blocks, a head."""
    out = ['name: "Generated-2000"\n',
           'layer {\n  name: "data"\n  type: "Input"\n  top: "data"\n'
           '  input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } }\n}\n']
    bottom, channels = "data", 64
    blocks = (n_layers - 4) // 4
    for b in range(blocks):
        if b and b % 100 == 0:
            channels = min(channels * 2, 2048)
        conv, bn, scale, relu = (f"conv{b}", f"conv{b}_bn", f"conv{b}_scale", f"conv{b}_relu")
        kernel, stride = (3, 2) if b % 100 == 0 and b else (3, 1)
        out.append(
            f'layer {{\n  name: "{conv}"\n  type: "Convolution"\n  bottom: "{bottom}"\n'
            f'  top: "{conv}"\n  param {{\n    lr_mult: 1\n    decay_mult: 1\n  }}\n'
            f'  convolution_param {{\n    num_output: {channels}\n    bias_term: false\n'
            f'    pad: 1\n    kernel_size: {kernel}\n    stride: {stride}\n'
            f'    weight_filler {{\n      type: "msra"\n    }}\n  }}\n}}\n'
            f'layer {{\n  name: "{bn}"\n  type: "BatchNorm"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n  param {{ lr_mult: 0 decay_mult: 0 }}\n'
            f'  param {{ lr_mult: 0 decay_mult: 0 }}\n  param {{ lr_mult: 0 decay_mult: 0 }}\n'
            f'  batch_norm_param {{\n    use_global_stats: true\n    eps: 1e-05\n  }}\n}}\n'
            f'layer {{\n  name: "{scale}"\n  type: "Scale"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n  scale_param {{\n    bias_term: true\n  }}\n}}\n'
            f'layer {{\n  name: "{relu}"\n  type: "ReLU"\n  bottom: "{conv}"\n'
            f'  top: "{conv}"\n}}\n')
        bottom = conv
    out.append(
        f'layer {{\n  name: "pool"\n  type: "Pooling"\n  bottom: "{bottom}"\n  top: "pool"\n'
        f'  pooling_param {{\n    pool: AVE\n    global_pooling: true\n  }}\n}}\n'
        f'layer {{\n  name: "fc"\n  type: "InnerProduct"\n  bottom: "pool"\n  top: "fc"\n'
        f'  inner_product_param {{\n    num_output: 1000\n  }}\n}}\n'
        f'layer {{\n  name: "prob"\n  type: "Softmax"\n  bottom: "fc"\n  top: "prob"\n}}\n')
    text = "".join(out)
    assert text.count("layer {") == n_layers, text.count("layer {")
    return text


def resnet50_blob_shapes() -> list[tuple[str, str, list[tuple[int, ...]]]]:
    """(name, type, blob shapes) of a ResNet-50's weighted layers: ~25.5M floats, ~102 MB."""
    layers: list[tuple[str, str, list[tuple[int, ...]]]] = []

    def conv_bn(name: str, cin: int, cout: int, k: int) -> None:
        layers.append((name, "Convolution", [(cout, cin, k, k)]))
        layers.append((f"bn_{name}", "BatchNorm", [(cout,), (cout,), (1,)]))
        layers.append((f"scale_{name}", "Scale", [(cout,), (cout,)]))

    conv_bn("conv1", 3, 64, 7)
    cin = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 2):
        for b in range(blocks):
            prefix = f"res{stage}{chr(ord('a') + b)}"
            if b == 0:
                conv_bn(f"{prefix}_branch1", cin, width * 4, 1)
            conv_bn(f"{prefix}_branch2a", cin, width, 1)
            conv_bn(f"{prefix}_branch2b", width, width, 3)
            conv_bn(f"{prefix}_branch2c", width, width * 4, 1)
            cin = width * 4
    layers.append(("fc1000", "InnerProduct", [(1000, cin), (1000,)]))
    return layers


def write_caffemodel(path: Path, target_mb: float, net_class) -> tuple[int, int]:
    """A ResNet-like .caffemodel of random float32 blobs, scaled to about `target_mb`.

    Blob data is merged in as packed wire bytes (the NetParameter class builds it far
    faster than a repeated-field extend). Returns (layers, floats).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = resnet50_blob_shapes()
    copies = max(1, round(target_mb * 1e6 / (4 * sum(
        int(np.prod(s)) for _, _, blobs in shapes for s in blobs))))
    net = net_class()
    net.name = "ResNet-like"
    floats = 0
    for copy in range(copies):
        for name, layer_type, blobs in shapes:
            layer = net.layer.add()
            layer.name = name if copies == 1 else f"{name}_{copy}"
            layer.type = layer_type
            for shape in blobs:
                array = rng.standard_normal(shape, dtype=np.float32)
                blob = layer.blobs.add()
                blob.shape.dim.extend(shape)
                payload = array.astype("<f4").tobytes()
                header, length = bytearray([(5 << 3) | 2]), len(payload)
                while True:
                    byte, length = length & 0x7F, length >> 7
                    header.append(byte | (0x80 if length else 0))
                    if not length:
                        break
                blob.MergeFromString(bytes(header) + payload)
                floats += array.size
    path.write_bytes(net.SerializeToString())
    return len(net.layer), floats


# --- benchmarks ---------------------------------------------------------------------------

def bench_in_process(inputs: dict[str, str], repeat: int) -> None:
    from google.protobuf import text_format

    from bnlint.caffe.load import parse_text
    from bnlint.caffe.schema import default_schema
    from bnlint.source import SourceFile
    from bnlint.syntax import parse, render

    net_class = default_schema().message_class("NetParameter")
    rows, refused, mismatched = [], [], []
    totals = dict.fromkeys(("parse", "parse_text", "text_format", "parse_tf", "conv_tf"), 0.0)
    for name, text in inputs.items():
        t_parse = best_of(lambda: parse(text, name), repeat)
        t_conv = best_of(lambda: parse_text(SourceFile(name, text)), repeat)
        t_round = best_of(lambda: render(parse(text, name)) == text, repeat)
        lossless = render(parse(text, name)) == text
        converted = parse_text(SourceFile(name, text))
        try:
            reference = net_class()
            text_format.Parse(text, reference)
        except text_format.ParseError as err:
            t_tf = None
            refused.append((name, str(err).splitlines()[0], converted))
        else:
            t_tf = best_of(lambda: text_format.Parse(text, net_class()), repeat)
            if (converted.message.SerializeToString(deterministic=True)
                    != reference.SerializeToString(deterministic=True)):
                mismatched.append(name)
            totals["text_format"] += t_tf
            totals["parse_tf"] += t_parse
            totals["conv_tf"] += t_conv
        totals["parse"] += t_parse
        totals["parse_text"] += t_conv
        rows.append([name, f"{len(text) / 1024:,.0f}", f"{text.count(chr(10)):,}",
                     ms(t_parse), ms(t_conv), ms(t_tf) if t_tf else "refused",
                     ms(t_round), ratio(t_tf, t_parse), ratio(t_tf, t_conv),
                     ratio(t_conv, t_parse), "yes" if lossless else "NO"])
    rows.append(["total (ratios: files text_format reads)", "", "", ms(totals["parse"]),
                 ms(totals["parse_text"]), ms(totals["text_format"]), "",
                 ratio(totals["text_format"], totals["parse_tf"]),
                 ratio(totals["text_format"], totals["conv_tf"]),
                 ratio(totals["parse_text"], totals["parse"]), ""])
    table(f"(a)-(c) in process, best of {repeat} after warm-up, milliseconds",
          ["input", "KiB", "lines", "(a) parse", "(b) parse_text", "(c) text_format",
           "render==text", "tf/(a)", "tf/(b)", "(b)/(a)", "lossless"], rows)
    print("  (a) bnlint.syntax.parse: lossless tree only")
    print("  (b) bnlint.caffe.load.parse_text: parse + schema conversion to NetParameter "
          "(dialect detection included)")
    print("  (c) google.protobuf.text_format.Parse into the same NetParameter class "
          f"(protobuf backend: {_protobuf_backend()})")
    print("  render==text: parse + render + compare (the round-trip check)")
    print("  target: tf/(a) >= 3x")
    for name, why, converted in refused:
        dialect = getattr(getattr(converted, "dialect", None), "name", None)
        read_as = f"read in dialect '{dialect}', " if dialect else ""
        print(f"  text_format refuses {name}: {why}\n    bnlint: {read_as}"
              f"{len(converted.problems)} schema problem(s); (c) skipped")
    if mismatched:
        print(f"  WARNING: parse_text's message differs from text_format's for: "
              f"{', '.join(mismatched)}")
    else:
        print("  parse_text's NetParameter serializes to text_format's bytes for every file "
              "text_format accepts")


def _protobuf_backend() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return api_implementation.Type()
    except ImportError:
        return "unknown"


def bench_processes(inputs: dict[str, str], runs: int, tmp: Path) -> None:
    bnlint, env = bnlint_command()
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
              "--encode=caffe.NetParameter", str(PROTO_DIR / "caffe.proto")]
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        print("\n(d) skipped: grpc_tools (grpcio-tools) is not installed")
        return
    rows, notes = [], []
    for name, text in inputs.items():
        src = CORPUS / name
        if name == GENERATED:
            src = tmp / "generated.prototxt"
            src.write_text(text)
        out = tmp / "out.caffemodel"
        t_protoc, rc_p, protoc_bytes = median_run(protoc, runs, stdin_path=src)
        t_ours, rc_o, _ = median_run([*bnlint, "convert", "--to", "binary", "-o", str(out),
                                      str(src)], runs, env=env)
        same = "-"
        if rc_p == 0 and rc_o == 0:
            same = "yes" if out.read_bytes() == protoc_bytes else "NO"
        rows.append([name, f"{ms(t_protoc)}" + ("" if rc_p == 0 else f" (exit {rc_p})"),
                     f"{ms(t_ours)}" + ("" if rc_o == 0 else f" (exit {rc_o})"),
                     ratio(t_ours, t_protoc), same])
        if rc_p or rc_o:
            who = ("both refuse it" if rc_p and rc_o else
                   "protoc refuses it (BVLC schema), bnlint encodes it" if rc_p else
                   "bnlint refuses it, protoc encodes it")
            notes.append(f"  {name}: protoc exit {rc_p}, bnlint exit {rc_o}: {who}; "
                         f"bytes not compared")
    table(f"(d) whole process, median of {runs} runs, milliseconds",
          ["input", "protoc --encode", "bnlint convert --to binary", "bnlint/protoc",
           "same bytes"], rows)
    print(f"  protoc: {' '.join(protoc[:2])} grpc_tools.protoc ... < file")
    print(f"  bnlint: {' '.join(bnlint)} convert --to binary -o OUT file")
    for n in notes:
        print(n)


def bench_weights(target_mb: float, repeat: int, tmp: Path) -> None:
    import numpy as np

    from bnlint.caffe.schema import default_schema

    net_class = default_schema().message_class("NetParameter")
    path = tmp / "resnet_like.caffemodel"
    start = time.perf_counter()
    n_layers, n_floats = write_caffemodel(path, target_mb, net_class)
    made = time.perf_counter() - start
    size = path.stat().st_size
    print(f"\n(e) reading a .caffemodel: {size / 1e6:,.1f} MB, {n_layers} layers, "
          f"{n_floats:,} float32 values (generated in {made:.1f} s); best of {repeat}, "
          f"milliseconds", end="")

    data = path.read_bytes()

    def naive_numpy() -> None:
        net = net_class.FromString(data)
        for layer in net.layer:
            for blob in layer.blobs:
                np.array(blob.data, dtype=np.float32).reshape(tuple(blob.shape.dim))

    reader = _weights_reader()
    measured = [("read file bytes", best_of(path.read_bytes, repeat)),
                ("NetParameter.FromString(bytes)", best_of(lambda: net_class.FromString(data),
                                                           repeat)),
                ("FromString + np.array(blob.data) per blob", best_of(naive_numpy, repeat))]
    if reader is None:
        print("  bnlint.caffe.weights has no reading function yet: bnlint row skipped")
    else:
        fn_name, fn = reader
        result = fn(str(path))
        got = sum(int(a.size) for blobs in result.values() for a in blobs) \
            if hasattr(result, "values") else None
        if got is not None and got != n_floats:
            print(f"  WARNING: {fn_name} returned {got:,} values, expected {n_floats:,}")
        measured.append((f"bnlint.caffe.weights.{fn_name}(path) -> arrays",
                         best_of(lambda: fn(str(path)), repeat)))
    base = measured[1][1]
    rows = [[what, ms(t), f"{size / 1e6 / t:,.0f}", ratio(t, base)] for what, t in measured]
    table("", ["step", "ms", "MB/s", "vs FromString"], rows)


def _weights_reader():
    try:
        from bnlint.caffe import weights
    except ImportError:
        return None
    for name in ("read_weights", "read_caffemodel", "load_weights", "load_caffemodel"):
        fn = getattr(weights, name, None)
        if callable(fn):
            return name, fn
    return None


def profile_parse(name: str, text: str, top: int = 12) -> None:
    """cProfile of the lossless parse, top functions by own time."""
    import cProfile
    import io
    import pstats

    from bnlint.syntax import parse

    parse(text, name)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(10):
        parse(text, name)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of bnlint.syntax.parse({name}) x10, top {top} by own time "
          f"(profiler overhead inflates Python-level calls):")
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    for line in lines[start:]:
        if line.strip():
            print("  " + line.replace(str(REPO / "src") + os.sep, ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="in-process repeats (best of)")
    ap.add_argument("--runs", type=int, default=7, help="whole-process runs (median of)")
    ap.add_argument("--weights-mb", type=float, default=100.0,
                    help="caffemodel size in MB (at least one ResNet-50, ~102 MB)")
    ap.add_argument("--profile", action="store_true",
                    help="also print a cProfile of the parse of the largest file")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}: nothing to benchmark")
        return 0
    inputs = {}
    for rel in LARGEST:
        path = CORPUS / rel
        if path.is_file():
            inputs[rel] = path.read_text(encoding="utf-8")
        else:
            print(f"missing corpus file {rel}: skipped")
    inputs[GENERATED] = generated_net()
    print(f"bnlint parse benchmark  (Python {sys.version.split()[0]}, "
          f"protobuf backend {_protobuf_backend()}, corpus {CORPUS})")
    bench_in_process(inputs, args.repeat)
    if args.profile:
        first = next(iter(inputs))
        profile_parse(first, inputs[first])
    with tempfile.TemporaryDirectory(prefix="bnlint-bench-") as tmp:
        bench_processes(inputs, args.runs, Path(tmp))
        bench_weights(args.weights_mb, max(3, args.repeat // 3), Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
