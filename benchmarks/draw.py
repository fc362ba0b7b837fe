"""How long `bnlint draw` takes on the largest corpus nets, step by step: reading and
linting (what `check` does), shape inference and blocks, the layered layout, and
writing the SVG and the HTML page; plus a whole `bnlint draw` process. The goal is
under 2 s for SENet-154 on this project's 2-core machine.

    PYTHONPATH=src python benchmarks/draw.py [--repeat 3] [--nets senet154,ssd]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
NETS = {
    "senet154": CORPUS / "SENet" / "SENet-154.prototxt",
    "resnet152": CORPUS / "deep-residual-networks" / "ResNet-152-deploy.prototxt",
    "densenet201": CORPUS / "DenseNet-Caffe" / "DenseNet_201.prototxt",
    "ssd-vgg16": CORPUS / "opencv_extra" / "ssd_vgg16.prototxt",
    "mobilenet-ssd-train": CORPUS / "MobileNet-SSD" / "MobileNetSSD_train@7e29b6c_2017-06-08.prototxt",
}


def best(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nets", default=",".join(NETS))
    args = parser.parse_args()

    from bnlint.draw import picture_of
    from bnlint.draw.html import render_html
    from bnlint.draw.layout import layered_layout
    from bnlint.draw.svg import lay_out, render_svg

    print(f"{'net':<20} {'layers':>6} {'blocks':>6} {'dummies':>7} {'read+lint':>9} "
          f"{'layout':>7} {'svg':>6} {'html':>6} {'process':>8}")
    for key in args.nets.split(","):
        path = NETS[key]
        if not path.exists():
            print(f"{key:<20} missing: {path}")
            continue
        t_read, picture = best(lambda: picture_of(str(path)), args.repeat)
        t_layout, drawing = best(lambda: lay_out(picture), args.repeat)
        routes = drawing.layout.routes
        dummies = sum(max(0, (len(r) - 2) // 2) for r in routes)
        t_svg, _ = best(lambda: render_svg(drawing), args.repeat)
        t_html, _ = best(lambda: render_html(drawing), args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "net.html"
            t_proc, _ = best(lambda: subprocess.run(
                [sys.executable, "-m", "bnlint", "draw", str(path), "-o", str(out)],
                check=True), args.repeat)
        layers = sum(1 for m in picture.members() if m.kind == "layer")
        print(f"{key:<20} {layers:>6} {len(picture.blocks):>6} {dummies:>7} "
              f"{t_read:>8.2f}s {t_layout:>6.2f}s {t_svg:>5.2f}s {t_html:>5.2f}s "
              f"{t_proc:>7.2f}s")
    # the layout alone on a synthetic 6,000-node chain with skip connections
    n = 6000
    edges = [(i - 1, i) for i in range(1, n)] + [(i - 5, i) for i in range(5, n, 5)]
    t_synth, _ = best(lambda: layered_layout([(120.0, 18.0)] * n, edges), 1)
    print(f"layout of a 6,000-node chain with skips: {t_synth:.2f}s")


if __name__ == "__main__":
    main()
