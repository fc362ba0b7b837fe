"""Byte-for-byte behaviour of check, to-deploy, fold and verify on ../shared, before vs after.

A refactoring must not change what bnlint prints or writes. This script runs the
four commands over ../shared/corpus and ../shared/golden in one process per source
tree and records, per run, the exit code, stdout, stderr and the bytes of every file
written. `snapshot` stores that record; `compare` runs a second tree (or reads a
second snapshot) and lists every run whose record differs.

    # the outputs of main, then of this tree, compared
    python benchmarks/behaviour.py snapshot /tmp/before --src /work/main/src
    python benchmarks/behaviour.py compare /tmp/before --src src

What runs (verify with one trial, to keep it to a couple of minutes):
  check      the whole corpus (text and json); each golden net, with its weights
  to-deploy  every train/test net of the corpus; --check against the known deploy
             nets and against its own output
  fold       every golden net with weights (the forward verification included)
  verify     each golden net against its fold; each train net against its to-deploy
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GOLDEN = SHARED / "golden"
# A fresh folder per snapshot (two runs at once must not share one), set by `snapshot`;
# printed paths name it as WORK_SHOWN, so that the records of two runs compare.
WORK = Path()
WORK_SHOWN = "<work>"

# train net -> the corpus's deploy net written for it (to-deploy --check)
DEPLOY_PAIRS = {
    "caffe/bvlc_alexnet__train_val.prototxt": "caffe/bvlc_alexnet__deploy.prototxt",
    "caffe/bvlc_googlenet__train_val.prototxt": "caffe/bvlc_googlenet__deploy.prototxt",
    "caffe/bvlc_reference_caffenet__train_val.prototxt": "caffe/bvlc_reference_caffenet__deploy.prototxt",
    "caffe/cifar10__cifar10_full_train_test.prototxt": "caffe/cifar10__cifar10_full.prototxt",
    "caffe/cifar10__cifar10_quick_train_test.prototxt": "caffe/cifar10__cifar10_quick.prototxt",
    "caffe/finetune_flickr_style__train_val.prototxt": "caffe/finetune_flickr_style__deploy.prototxt",
    "caffe/mnist__lenet_train_test.prototxt": "caffe/mnist__lenet.prototxt",
    "caffe/siamese__mnist_siamese_train_test.prototxt": "caffe/siamese__mnist_siamese.prototxt",
    "SqueezeNet/SqueezeNet_v1.0__train_val.prototxt": "SqueezeNet/SqueezeNet_v1.0__deploy.prototxt",
    "SqueezeNet/SqueezeNet_v1.1__train_val.prototxt": "SqueezeNet/SqueezeNet_v1.1__deploy.prototxt",
    "MobileNet-SSD/MobileNetSSD_train@7e29b6c_2017-06-08.prototxt":
        "MobileNet-SSD/MobileNetSSD_deploy@7e29b6c_2017-06-08.prototxt",
    "MobileNet-SSD/voc__MobileNetSSD_train.prototxt": "MobileNet-SSD/voc__MobileNetSSD_deploy.prototxt",
    "SegNet-Tutorial/Models__segnet_train.prototxt": "SegNet-Tutorial/Models__segnet_inference.prototxt",
    "SegNet-Tutorial/Models__segnet_basic_train.prototxt":
        "SegNet-Tutorial/Models__segnet_basic_inference.prototxt",
}


def _train_nets() -> list[str]:
    rows = (CORPUS / "MANIFEST.tsv").read_text().splitlines()[1:]
    out = []
    for row in rows:
        cols = row.split("\t")
        if len(cols) > 5 and (cols[5] in ("train", "test") or cols[5].startswith("test(")):
            out.append(cols[0])
    return sorted(out)


def _golden_nets() -> list[Path]:
    return sorted(p.parent for p in GOLDEN.rglob("weights.caffemodel"))


def _run(argv: list[str], outputs: list[Path] = ()) -> dict:
    """One in-process `bnlint ARGV`: exit code, stdout, stderr, written files' digests."""
    from bnlint.cli import main

    for path in outputs:
        if path.exists():
            path.unlink()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # verify's json report carries its wall time: the one field that may differ
    stdout = re.sub(r'"seconds": [0-9.e+-]+', '"seconds": (masked)', out.getvalue())
    record = {"argv": [a.replace(str(WORK), WORK_SHOWN) for a in argv], "exit": code,
              "stdout": stdout.replace(str(WORK), WORK_SHOWN),
              "stderr": err.getvalue().replace(str(WORK), WORK_SHOWN)}
    for path in outputs:
        record[f"file:{path.name}"] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                       if path.exists() else None)
    return record


def snapshot() -> dict[str, dict]:
    """Every run's record, keyed by a stable label."""
    global WORK
    os.chdir(SHARED)  # relative paths in every message
    with tempfile.TemporaryDirectory(prefix="bnlint-behaviour-") as work:
        WORK = Path(work)
        return _runs()


def _runs() -> dict[str, dict]:
    runs: dict[str, dict] = {}
    runs["check corpus text"] = _run(["check", "--no-color", "corpus"])
    runs["check corpus json"] = _run(["check", "--format", "json", "corpus"])
    for net in _golden_nets():
        rel = str(net.relative_to(SHARED))
        runs[f"check {rel}"] = _run(["check", "--no-color", f"{rel}/net.prototxt",
                                     "--weights", f"{rel}/weights.caffemodel"])
    deploys: dict[str, Path] = {}
    for i, train in enumerate(_train_nets()):
        out = WORK / f"deploy{i}.prototxt"
        shapes: list[str] = []
        while True:  # name the inputs whose shape the net does not tell, one by one
            runs[f"to-deploy {train}{''.join(shapes)}"] = rec = _run(
                ["to-deploy", f"corpus/{train}", "-o", str(out), *shapes], [out])
            unknown = re.search(r"cannot infer the input shape of '([^']+)'", rec["stderr"])
            if not unknown or len(shapes) > 6:
                break
            shapes += ["--input-shape", f"{unknown.group(1)}=1,3,64,64"]
        if rec["exit"] == 0:
            deploys[train] = out
            runs[f"to-deploy --check self {train}"] = _run(
                ["to-deploy", f"corpus/{train}", "--check", str(out)])
        if train in DEPLOY_PAIRS:
            runs[f"to-deploy --check {train}"] = _run(
                ["to-deploy", f"corpus/{train}", "--check", f"corpus/{DEPLOY_PAIRS[train]}"])
            runs[f"verify {train} {DEPLOY_PAIRS[train]}"] = _run(
                ["verify", f"corpus/{train}", f"corpus/{DEPLOY_PAIRS[train]}", "--trials", "1",
                 *shapes])
    for i, net in enumerate(_golden_nets()):
        rel = str(net.relative_to(SHARED))
        out, wout = WORK / f"fold{i}.prototxt", WORK / f"fold{i}.caffemodel"
        runs[f"fold {rel}"] = rec = _run(
            ["fold", f"{rel}/net.prototxt", "--weights", f"{rel}/weights.caffemodel",
             "-o", str(out)], [out, wout])
        if rec["exit"] == 0:
            runs[f"verify {rel} fold"] = _run(
                ["verify", f"{rel}/net.prototxt", str(out), "--weights-a",
                 f"{rel}/weights.caffemodel", "--weights-b", str(wout), "--trials", "1"])
    for train, deploy in deploys.items():
        runs[f"verify {train} deploy"] = _run(
            ["verify", f"corpus/{train}", str(deploy), "--trials", "1", "--format", "json"])
    return runs


def _snapshot_with(src: str) -> dict[str, dict]:
    """Run `snapshot` in a fresh process importing bnlint from SRC."""
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    done = subprocess.run([sys.executable, __file__, "_dump"], env=env, check=True,
                          stdout=subprocess.PIPE)
    return json.loads(done.stdout)


def compare(before: dict[str, dict], after: dict[str, dict]) -> int:
    bad = 0
    for label in sorted(set(before) | set(after)):
        a, b = before.get(label), after.get(label)
        if a == b:
            continue
        bad += 1
        keys = sorted({*(a or {}), *(b or {})})
        diff = [k for k in keys if (a or {}).get(k) != (b or {}).get(k)]
        print(f"DIFFERS: {label}: {', '.join(diff)}")
        for key in diff[:3]:
            print(f"  before {key}: {str((a or {}).get(key))[:400]!r}")
            print(f"  after  {key}: {str((b or {}).get(key))[:400]!r}")
    print(f"{len(after)} runs, {bad} differ")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    snap = sub.add_parser("snapshot", help="record a tree's outputs into DIR/behaviour.json")
    snap.add_argument("dir", type=Path)
    snap.add_argument("--src", default=str(REPO / "src"))
    comp = sub.add_parser("compare", help="compare a tree (or a second snapshot) with DIR's")
    comp.add_argument("dir", type=Path)
    comp.add_argument("--src", default=str(REPO / "src"))
    comp.add_argument("--other", type=Path, help="a second snapshot DIR instead of running")
    sub.add_parser("_dump")
    args = parser.parse_args()
    if args.cmd == "_dump":
        json.dump(snapshot(), sys.stdout)
        return 0
    if not CORPUS.is_dir():
        print(f"no ../shared next to this clone ({SHARED})", file=sys.stderr)
        return 2
    if args.cmd == "snapshot":
        args.dir.mkdir(parents=True, exist_ok=True)
        runs = _snapshot_with(args.src)
        (args.dir / "behaviour.json").write_text(json.dumps(runs, indent=1, sort_keys=True))
        print(f"{len(runs)} runs recorded in {args.dir / 'behaviour.json'}")
        return 0
    before = json.loads((args.dir / "behaviour.json").read_text())
    after = (json.loads((args.other / "behaviour.json").read_text()) if args.other
             else _snapshot_with(args.src))
    return compare(before, after)


if __name__ == "__main__":
    sys.exit(main())
