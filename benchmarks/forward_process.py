"""`bnlint forward` as a whole process against OpenCV's dnn as a whole process, idle and busy.

What a user waits for: start Python, import, read the net and the weights, one forward
at batch 1, write the outputs. Each net runs as `python -m bnlint forward NET --weights W
--input data=x.npy -o out.npz` and as a small script doing the same with cv2.dnn
(readNetFromCaffe, setInput, forward, np.savez), alternately, so that load spikes from
other processes hit both alike. The "busy" rows run the same while this script keeps one
core spinning in another process (what a developer's machine with a build running looks
like); OpenBLAS's own thread pool collapses there, see bnlint.forward.parallel.

Weights: the golden MobileNet-SSD weights, seeded random ones (benchmarks/forward.py's
`seeded_weights`) for the others. Peak memory is each child's ru_maxrss.

    PYTHONPATH=src python benchmarks/forward_process.py [--runs 5] [--nets resnet50,...]
        [--modes idle,busy]

Goals (issue 18): at most 1.0x OpenCV on each net, idle and busy; at most 0.8x on
ResNet-50; a lower peak memory than OpenCV's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward import INPUT_SHAPE, REPO, _env, _input_name, seeded_weights  # noqa: E402

SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
NETS = {
    "mobilenet_v1": CORPUS / "MobileNet-Caffe" / "mobilenet_deploy.prototxt",
    "mobilenet_v2": CORPUS / "MobileNet-Caffe" / "mobilenet_v2_deploy.prototxt",
    "densenet121": CORPUS / "DenseNet-Caffe" / "DenseNet_121.prototxt",
    "se_bn_inception": CORPUS / "SENet" / "SE-BN-Inception.prototxt",
    "resnet50": CORPUS / "deep-residual-networks" / "ResNet-50-deploy.prototxt",
    "mobilenet_ssd": SHARED / "golden" / "mobilenet_ssd" / "net.prototxt",
}
GOLDEN_WEIGHTS = {"mobilenet_ssd": SHARED / "golden" / "mobilenet_ssd" / "weights.caffemodel"}
GOAL = {"resnet50": 0.8}

OPENCV_SCRIPT = """
import sys
import cv2
import numpy as np
net_path, weights, name, x_path, out = sys.argv[1:]
net = cv2.dnn.readNetFromCaffe(net_path, weights)
x = np.load(x_path)
net.setInput(x, name)
np.savez(out, output=net.forward())
"""

SPIN = "while True: pass"


def prepare_all(nets: list[str], tmp: Path, seed: int) -> dict[str, tuple]:
    """`prepare` each net in a child process: this one stays small, since a child's
    ru_maxrss starts from the size of the process it was forked from."""
    out = subprocess.run([sys.executable, __file__, "--prepare", str(tmp), "--seed", str(seed),
                          "--nets", ",".join(nets)], env=_env(), check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return {key: tuple(value) for key, value in json.loads(out.splitlines()[-1]).items()}


def prepare(key: str, tmp: Path, seed: int) -> tuple[str, str, str, str]:
    """(net, weights, input name, input .npy) for one net."""
    import numpy as np

    from bnlint.caffe.weights import write_caffemodel

    net_path = NETS[key]
    name = _input_name(net_path)
    weights = GOLDEN_WEIGHTS.get(key)
    shape = INPUT_SHAPE
    if key == "mobilenet_ssd":
        shape = (1, 3, 300, 300)
    if weights is None:
        view, arrays = seeded_weights(net_path, seed)
        weights = tmp / f"{key}.caffemodel"
        write_caffemodel(str(weights), view, arrays)
    x = tmp / f"{key}.npy"
    np.save(x, np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))
    return str(net_path), str(weights), name, str(x)


def commands(key: str, net_path: str, weights: str, name: str, x: str, tmp: Path
             ) -> dict[str, list[str]]:
    return {
        "bnlint": [sys.executable, "-m", "bnlint", "forward", str(net_path), "--weights",
                   weights, "--input", f"{name}={x}", "-o", str(tmp / f"{key}.b.npz")],
        "opencv": [sys.executable, "-c", OPENCV_SCRIPT, net_path, weights, name, x,
                   str(tmp / f"{key}.o.npz")],
    }


def run_once(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak MiB, exit code) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode


def bench(args) -> None:
    env = _env()
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "BNLINT_THREADS"):
        env.pop(name, None)                        # each tool's own default policy
    loads = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bnlint-fwd-") as tmp_name:
        tmp = Path(tmp_name)
        prepared = prepare_all(args.nets, tmp, args.seed)
        for mode in args.modes:
            spinner = (subprocess.Popen([sys.executable, "-c", SPIN]) if mode == "busy"
                       else None)
            try:
                time.sleep(0.5 if spinner else 0)
                for key in args.nets:
                    argvs = commands(key, *prepared[key], tmp)
                    times = {tool: [] for tool in argvs}
                    peaks = {tool: 0.0 for tool in argvs}
                    for tool, argv in argvs.items():            # warm the page cache
                        run_once(argv, env)
                    for _ in range(args.runs):
                        for tool, argv in argvs.items():
                            wall, peak, code = run_once(argv, env)
                            if code:
                                raise SystemExit(f"{tool} failed on {key} (exit {code})")
                            times[tool].append(wall)
                            peaks[tool] = max(peaks[tool], peak)
                    loads.append(os.getloadavg()[0])
                    b, o = (statistics.median(times[t]) for t in ("bnlint", "opencv"))
                    ratio = b / o
                    goal = GOAL.get(key, 1.0)
                    rows.append([key, mode, f"{b * 1e3:.0f}", f"{o * 1e3:.0f}",
                                 f"{ratio:.2f}x", f"{goal:.1f}x",
                                 "met" if ratio <= goal else "NOT met",
                                 f"{peaks['bnlint']:.0f}", f"{peaks['opencv']:.0f}"])
                    print("  ".join(rows[-1]), flush=True)
            finally:
                if spinner:
                    spinner.kill()
                    spinner.wait()
    header = ["net", "machine", "bnlint ms", "OpenCV ms", "ratio", "goal", "", "bnlint MiB",
              "OpenCV MiB"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\nwhole process, batch 1, median of {args.runs} interleaved runs; "
          f"{os.cpu_count()} CPUs; load average seen {min(loads):.2f}-{max(loads):.2f}")
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nets", type=lambda s: s.split(","), default=list(NETS))
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["idle", "busy"])
    parser.add_argument("--prepare", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps({key: prepare(key, Path(args.prepare), args.seed)
                          for key in args.nets}))
        return
    unknown = sorted(set(args.nets) - set(NETS)) + sorted(set(args.modes) - {"idle", "busy"})
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}: nothing to measure")
        return
    bench(args)


if __name__ == "__main__":
    main()
