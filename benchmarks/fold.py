"""What folding buys at run time: forward time of ResNet-50 and MobileNet v1, unfolded and
folded, in bnlint's NumPy forward (and in OpenCV's dnn module when cv2 is importable).

The deploy nets come from ../shared/corpus; their weights are seeded and realistic
(He-scaled convolutions, BatchNorm statistics stored times a scale factor of 999.982
as a trained net stores them, Scale gamma in [0.5, 1.5]). `bnlint fold` (its API,
with the forward verification) makes the folded files; then each net runs batch 1 at
224x224, best and median of N passes after a warm-up, the variants interleaved so a
load spike hits all alike. Both wall time and this process's CPU time are measured:
on a shared machine the CPU time (with --threads 1) is the steadier measure. OpenCV
fuses BatchNorm and Scale into the convolution itself when it loads a net, so its two
times should be close: folding matters for runtimes that do not (bnlint's reference
forward, simple deployment runtimes).

    PYTHONPATH=src python benchmarks/fold.py [--repeat 10] [--threads 1] [--nets mobilenet]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
NETS = {
    "resnet50": ("ResNet-50", CORPUS / "deep-residual-networks" / "ResNet-50-deploy.prototxt"),
    "mobilenet": ("MobileNet v1", CORPUS / "MobileNet-Caffe" / "mobilenet_deploy.prototxt"),
}
INPUT_SHAPE = (1, 3, 224, 224)
FACTOR = 999.982


def seeded_weights(view, input_name: str, seed: int):
    """Realistic random blobs for every parameterised layer, from the inferred shapes."""
    import numpy as np

    from bnlint.forward.executor import Network

    shapes = Network(view, None, None, input_shapes={input_name: INPUT_SHAPE}, seed=seed).blobs
    rng = np.random.default_rng(seed)
    arrays = {}
    for lv in view.layers:
        blobs = shapes.get(lv.name)
        if not blobs:
            continue
        if lv.type == "BatchNorm":
            c = blobs[0].shape
            arrays[lv.name] = [(rng.normal(0, 0.1, c) * FACTOR).astype(np.float32),
                               (rng.uniform(0.5, 1.5, c) * FACTOR).astype(np.float32),
                               np.array([FACTOR], np.float32)]
        elif lv.type == "Scale":
            arrays[lv.name] = [rng.uniform(0.5, 1.5, blobs[0].shape).astype(np.float32)] + [
                rng.uniform(-0.1, 0.1, b.shape).astype(np.float32) for b in blobs[1:]]
        else:
            weight = blobs[0]
            fan_in = max(1, weight[0].size) if weight.ndim >= 2 else 1
            arrays[lv.name] = [(rng.standard_normal(weight.shape) *
                                np.sqrt(2.0 / fan_in)).astype(np.float32)] + [
                rng.uniform(-0.1, 0.1, b.shape).astype(np.float32) for b in blobs[1:]]
    return arrays


def input_name(view) -> str:
    if view.inputs:
        return view.inputs[0].name
    return next(lv.tops[0] for lv in view.layers if lv.type == "Input")


def timed(run, repeat: int) -> tuple[list[float], list[float]]:
    """Sorted wall and CPU times of `repeat` runs after one warm-up run."""
    run()                                   # warm-up: page faults, BLAS threads, caches
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return sorted(wall), sorted(cpu)


def prepare(key: str, seed: int, folder: Path) -> dict:
    """The unfolded and folded files of one net, and how long the fold took."""
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.net import net_view
    from bnlint.caffe.weights import write_caffemodel
    from bnlint.files import read_text
    from bnlint.transform.fold import FOLDED, fold

    title, net_path = NETS[key]
    text = parse_text(read_text(str(net_path)))
    view = net_view(text)
    name = input_name(view)
    arrays = seeded_weights(view, name, seed)
    weights = folder / f"{key}.caffemodel"
    write_caffemodel(str(weights), view, arrays)
    start = time.perf_counter()
    result = fold(text, arrays, input_shapes={name: INPUT_SHAPE}, seed=seed)
    fold_s = time.perf_counter() - start
    folded, folded_weights = folder / f"{key}.folded.prototxt", folder / f"{key}.folded.caffemodel"
    folded.write_text(result.plan.text)
    folded_weights.write_bytes(result.caffemodel)
    return {"title": title, "input": name, "fold_s": fold_s,
            "sites": sum(site.action == FOLDED for site in result.plan.sites),
            "worst": result.verification.worst().used,
            "layers": (len(view.layers), len(net_view(parse_text(read_text(str(folded)))).layers)),
            "files": {"unfolded": (net_path, weights), "folded": (folded, folded_weights)}}


def runners(info: dict, x, threads: int) -> dict[tuple[str, str], object]:
    """(framework, variant) -> a zero-argument forward returning the last blob."""
    from bnlint.forward.executor import load_network

    out = {}
    for variant, (net_path, weights) in info["files"].items():
        net = load_network(str(net_path), str(weights), input_shapes={info["input"]: x.shape})
        out[("bnlint", variant)] = (lambda net=net: net.run({info["input"]: x}))
    try:
        import cv2
    except ImportError:
        return out
    if threads:
        cv2.setNumThreads(threads)
    for variant, (net_path, weights) in info["files"].items():
        cv_net = cv2.dnn.readNetFromCaffe(str(net_path), str(weights))

        def run(cv_net=cv_net):
            cv_net.setInput(x, info["input"])
            return cv_net.forward()
        out[("opencv", variant)] = run
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; the best round's times are kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS and OpenCV threads (0: their defaults)")
    args = parser.parse_args()
    if args.threads:                        # before NumPy loads its BLAS
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    if not CORPUS.is_dir():
        console.print(f"[yellow]../shared/corpus is not next to this clone ({CORPUS})[/]")
        return
    table = Table(title=f"forward, batch 1, {INPUT_SHAPE[2]}x{INPUT_SHAPE[3]}, threads "
                        f"{args.threads or 'default'}: best of {args.repeat} (best of "
                        f"{args.rounds} interleaved rounds); median wall in brackets")
    for column in ("net", "framework", "unfolded wall ms", "folded wall ms", "speed-up",
                   "unfolded CPU ms", "folded CPU ms", "CPU speed-up"):
        table.add_column(column, justify="left" if column in ("net", "framework") else "right")
    notes = []
    with tempfile.TemporaryDirectory(prefix="bnlint-fold-bench-") as tmp:
        for key in args.nets.split(","):
            info = prepare(key, args.seed, Path(tmp))
            notes.append(f"{info['title']}: {info['sites']} BatchNorm sites folded, layers "
                         f"{info['layers'][0]} -> {info['layers'][1]}; bnlint fold (plan, "
                         f"checks, forward verification) {info['fold_s']:.1f} s, worst "
                         f"{info['worst']:.1%} of tolerance")
            x = np.random.default_rng(args.seed).uniform(-1, 1, INPUT_SHAPE).astype(np.float32)
            runs = runners(info, x, args.threads)
            best: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
            for _ in range(args.rounds):
                for key_run, run in runs.items():
                    wall, cpu = timed(run, args.repeat)
                    old = best.get(key_run)
                    best[key_run] = (min(old[0], wall) if old else wall,
                                     min(old[1], cpu) if old else cpu)
            for framework in dict.fromkeys(f for f, _ in runs):
                (wall0, cpu0), (wall1, cpu1) = (best[(framework, "unfolded")],
                                                best[(framework, "folded")])
                mid = len(wall0) // 2
                table.add_row(info["title"], framework,
                              f"{wall0[0] * 1e3:.1f} [{wall0[mid] * 1e3:.0f}]",
                              f"{wall1[0] * 1e3:.1f} [{wall1[mid] * 1e3:.0f}]",
                              f"{wall0[0] / wall1[0]:.2f}x", f"{cpu0[0] * 1e3:.1f}",
                              f"{cpu1[0] * 1e3:.1f}", f"{cpu0[0] / cpu1[0]:.2f}x")
            table.add_section()
    console.print(table)
    for note in notes:
        console.print(note)
    console.print(f"CPUs: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f} at the end "
                  f"(other processes skew the times; compare ratios)")


if __name__ == "__main__":
    main()
