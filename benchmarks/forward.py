"""Forward-pass speed and peak memory: bnlint's NumPy forward against OpenCV's dnn (and pycaffe).

For ResNet-50, MobileNet v1 and DenseNet-121 from ../shared/corpus: seeded random
weights (He-scaled convolutions, BatchNorm statistics of a unit-variance input, Scale
gamma in [0.5, 1.5]) written to one temporary .caffemodel that every framework
loads, batch 1 at 224x224. Each framework runs in its own subprocess so that peak
memory (ru_maxrss) is its own: import, load, one warm-up pass, then the best and
median of N timed passes (computing the whole net; the logits are fetched). The
logits are compared across frameworks with the golden tolerance as a sanity check.

    PYTHONPATH=src python benchmarks/forward.py [--repeat 10] [--threads 1] [--nets mobilenet]
    PYTHONPATH=src python benchmarks/forward.py --profile resnet50   # time per layer type

Targets: bnlint within 1.5x of OpenCV's time, with a lower peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
NETS = {
    "resnet50": ("ResNet-50", CORPUS / "deep-residual-networks" / "ResNet-50-deploy.prototxt"),
    "mobilenet": ("MobileNet v1", CORPUS / "MobileNet-Caffe" / "mobilenet_deploy.prototxt"),
    "densenet121": ("DenseNet-121", CORPUS / "DenseNet-Caffe" / "DenseNet_121.prototxt"),
}
INPUT_SHAPE = (1, 3, 224, 224)
FRAMEWORKS = ("bnlint", "opencv", "pycaffe")


def peak_rss_mib() -> float:
    """This process's own peak resident set, in MiB.

    Linux's VmHWM when there is one: ru_maxrss would do, but on Linux it keeps the
    high-water mark of the process that forked us (exec records the old address
    space's peak), so every worker would report at least the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the parent: weights, subprocesses, the table ----------------------------------------

def seeded_weights(net_path: Path, seed: int):
    """Realistic random blobs for every parameterised layer, from the inferred shapes."""
    import numpy as np

    from bnlint.forward.executor import load_network

    network = load_network(str(net_path), input_shapes={_input_name(net_path): INPUT_SHAPE},
                           seed=seed)
    rng = np.random.default_rng(seed)
    arrays = {}
    for step in network.steps:
        blobs = network.blobs.get(step.layer.name)
        if not blobs:
            continue
        kind = step.layer.type
        if kind == "BatchNorm":
            channels = blobs[0].shape
            factor = np.float32(999.982)
            arrays[step.layer.name] = [
                (rng.normal(0, 0.1, channels) * factor).astype(np.float32),
                (rng.uniform(0.5, 1.5, channels) * factor).astype(np.float32),
                np.array([factor], np.float32)]
        elif kind == "Scale":
            arrays[step.layer.name] = [rng.uniform(0.5, 1.5, blobs[0].shape).astype(np.float32)] + [
                rng.uniform(-0.1, 0.1, b.shape).astype(np.float32) for b in blobs[1:]]
        else:
            weight = blobs[0]
            fan_in = max(1, weight[0].size) if weight.ndim >= 2 else 1
            arrays[step.layer.name] = [
                (rng.standard_normal(weight.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            ] + [rng.uniform(-0.1, 0.1, b.shape).astype(np.float32) for b in blobs[1:]]
    return network.view, arrays


def _input_name(net_path: Path) -> str:
    """The first input of a net: a net-level `input:` or the first Input layer's top."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.files import read_text

    view = net_view(parse_text(read_text(str(net_path))))
    if view.inputs:
        return view.inputs[0].name
    for layer in view.layers:
        if layer.type == "Input":
            return layer.tops[0]
    return "data"


def compared_blob(net_path: Path) -> tuple[str, str]:
    """(blob, layer) compared across frameworks: the logits when the net ends in a Softmax
    (a saturated softmax hides differences), else the last layer's top."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.files import read_text

    layers = net_view(parse_text(read_text(str(net_path)))).layers
    last = layers[-1]
    if last.type == "Softmax":
        blob = last.bottoms[0]
        producer = next(lv for lv in reversed(layers[:-1]) if blob in lv.tops)
        return blob, producer.name
    return last.tops[0], last.name


def available(framework: str) -> bool:
    module = {"bnlint": "numpy", "opencv": "cv2", "pycaffe": "caffe"}[framework]
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                           env=_env())
    return probe.returncode == 0


def _env(threads: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    if threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def measure(framework: str, net_path: Path, weights: Path, inputs: Path, output: Path,
            args) -> dict:
    command = [sys.executable, __file__, "--worker", framework, str(net_path), str(weights),
               str(inputs), str(output), "--repeat", str(args.repeat),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(args.threads))
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark(args) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from bnlint.caffe.weights import write_caffemodel
    from bnlint.errors import BnlintError
    from bnlint.forward.compare import golden_close

    console = Console(width=None if sys.stdout.isatty() else 150)
    frameworks = [f for f in FRAMEWORKS if available(f)]
    for missing in sorted(set(FRAMEWORKS) - set(frameworks)):
        console.print(f"[yellow]{missing}: not importable, skipped[/]")
    threads = args.threads or "default"
    table = Table(title=f"forward, batch 1, {INPUT_SHAPE[2]}x{INPUT_SHAPE[3]}, threads "
                        f"{threads}: best / median of {args.repeat} after {args.warmup} "
                        f"warm-up (best of {args.rounds} rounds); peak RSS per process")
    for column in ("net", "framework", "load s", "best ms", "median ms", "peak MiB",
                   "time vs OpenCV", "memory vs OpenCV", "output vs bnlint"):
        table.add_column(column, justify="left" if column in ("net", "framework") else "right")
    with tempfile.TemporaryDirectory(prefix="bnlint-bench-") as tmp:
        for key in args.nets:
            title, net_path = NETS[key]
            try:
                view, arrays = seeded_weights(net_path, args.seed)
            except BnlintError as err:
                console.print(f"[yellow]{title}: skipped, bnlint cannot load it: {err}[/]")
                continue
            weights = Path(tmp) / f"{key}.caffemodel"
            write_caffemodel(str(weights), view, arrays)
            del arrays
            inputs = Path(tmp) / f"{key}.input.npy"
            np.save(inputs, np.random.default_rng(args.seed).uniform(-1, 1, INPUT_SHAPE)
                    .astype(np.float32))
            results: dict[str, dict] = {}
            for _ in range(args.rounds):          # interleaved, so load spikes hit all alike
                for framework in frameworks:
                    output = Path(tmp) / f"{key}.{framework}.npy"
                    result = measure(framework, net_path, weights, inputs, output, args)
                    result["output"] = output
                    results[framework] = _better(results.get(framework), result)
            base = results.get("opencv", {})
            reference = results.get("bnlint", {})
            for framework, result in results.items():
                if "error" in result:
                    table.add_row(title, framework, "", "", "", "", "", "",
                                  f"error: {result['error']}")
                    continue
                time_ratio = mem_ratio = agreement = ""
                if "best_ms" in base:
                    time_ratio = f"{result['best_ms'] / base['best_ms']:.2f}x"
                    mem_ratio = f"{result['peak_mib'] / base['peak_mib']:.2f}x"
                if framework != "bnlint" and "best_ms" in reference:
                    mine = np.load(reference["output"])
                    theirs = np.load(result["output"])
                    if theirs.size == mine.size:
                        close = golden_close(theirs.reshape(mine.shape), mine)
                        agreement = (f"{close.used:.1%} of tol" if close.ok
                                     else f"DIFFERS: {close.describe()}")
                table.add_row(title, framework, f"{result['load_s']:.2f}",
                              f"{result['best_ms']:.1f}", f"{result['median_ms']:.1f}",
                              f"{result['peak_mib']:.0f}", time_ratio, mem_ratio, agreement)
            table.add_section()
    console.print(table)
    console.print(f"CPUs: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f} at the end "
                  f"(other processes skew the times; compare ratios)")


def _better(old: dict | None, new: dict) -> dict:
    """Keep the faster round's times; the peak memory is the larger seen."""
    if old is None or "error" in old:
        return new
    if "error" in new:
        return old
    best = dict(new if new["best_ms"] < old["best_ms"] else old)
    best["peak_mib"] = max(old["peak_mib"], new["peak_mib"])
    best["median_ms"] = min(old["median_ms"], new["median_ms"])
    return best


# --- the workers: one framework, one net, in a fresh process ----------------------------------

def _timed(run, repeat: int, warmup: int) -> tuple[float, float, object]:
    for _ in range(warmup):
        out = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2], out


def worker(framework: str, net_path: str, weights: str, inputs: str, output: str,
           repeat: int, warmup: int, threads: int = 0) -> None:
    import numpy as np

    x = np.load(inputs, allow_pickle=False)
    blob, layer = compared_blob(Path(net_path))
    start = time.perf_counter()
    if framework == "bnlint":
        from bnlint.forward.executor import load_network

        net = load_network(net_path, weights, input_shapes={_input_name(Path(net_path)): x.shape})
        name = net.input_names[0]

        def run():
            return net.run({name: x}, keep={blob})[blob]
    elif framework == "opencv":
        import cv2

        if threads:
            cv2.setNumThreads(threads)
        net = cv2.dnn.readNetFromCaffe(net_path, weights)

        def run():
            net.setInput(x)
            return net.forward(layer)
    else:
        import caffe

        caffe.set_mode_cpu()
        net = caffe.Net(net_path, weights, caffe.TEST)
        name = net.inputs[0]

        def run():
            net.blobs[name].data[...] = x
            return net.forward(blobs=[blob])[blob].copy()
    load_s = time.perf_counter() - start
    best, median, out = _timed(run, repeat, warmup)
    np.save(output, np.asarray(out, dtype=np.float32))
    print(json.dumps({"load_s": load_s, "best_ms": best * 1e3, "median_ms": median * 1e3,
                      "peak_mib": peak_rss_mib()}))


def profile(key: str, seed: int, repeat: int) -> None:
    """Time per layer type in bnlint's forward, to find the op worth speeding up."""
    import numpy as np

    from bnlint.caffe.weights import write_caffemodel
    from bnlint.forward.executor import load_network

    title, net_path = NETS[key]
    view, arrays = seeded_weights(net_path, seed)
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "w.caffemodel")
        write_caffemodel(weights, view, arrays)
        net = load_network(str(net_path), weights,
                           input_shapes={_input_name(net_path): INPUT_SHAPE})
    x = np.random.default_rng(seed).uniform(-1, 1, INPUT_SHAPE).astype(np.float32)
    per_type: dict[str, float] = {}
    per_layer: dict[str, float] = {}
    clock = [0.0]

    def on_layer(layer, tops):
        now = time.perf_counter()
        spent = now - clock[0]
        per_type[layer.type] = per_type.get(layer.type, 0.0) + spent
        per_layer[layer.name] = per_layer.get(layer.name, 0.0) + spent
        clock[0] = time.perf_counter()

    net.run({net.input_names[0]: x})
    total = 0.0
    for _ in range(repeat):
        clock[0] = time.perf_counter()
        start = clock[0]
        # The hook keeps no tops, so layers may still write into their bottoms as in `run`.
        net.run({net.input_names[0]: x}, on_layer=on_layer, reuse=True)
        total += time.perf_counter() - start
    print(f"{title}: {total / repeat * 1e3:.1f} ms per forward (mean of {repeat})")
    for kind, spent in sorted(per_type.items(), key=lambda item: -item[1]):
        print(f"  {kind:<14} {spent / repeat * 1e3:8.2f} ms  {spent / total:6.1%}")
    print("  slowest layers:")
    for name, spent in sorted(per_layer.items(), key=lambda item: -item[1])[:8]:
        print(f"    {name:<28} {spent / repeat * 1e3:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="measure each framework this many times, interleaved")
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS / OpenCV threads per worker (0: the libraries' defaults)")
    parser.add_argument("--nets", type=lambda s: s.split(","), default=list(NETS))
    parser.add_argument("--profile", choices=sorted(NETS))
    parser.add_argument("--worker", nargs=5, metavar=("FRAMEWORK", "NET", "WEIGHTS", "INPUT",
                                                      "OUTPUT"))
    args = parser.parse_args()
    os.environ.update({k: v for k, v in _env(args.threads).items()
                       if k.endswith("_NUM_THREADS")})      # before NumPy is imported
    if args.worker:
        worker(*args.worker, repeat=args.repeat, warmup=args.warmup, threads=args.threads)
    elif args.profile:
        profile(args.profile, args.seed, args.repeat)
    else:
        unknown = sorted(set(args.nets) - set(NETS))
        if unknown:
            parser.error(f"unknown net {', '.join(unknown)}; choose from {', '.join(NETS)}")
        benchmark(args)


if __name__ == "__main__":
    main()
