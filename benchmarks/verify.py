"""`bnlint verify` speed: ResNet-50 train_val against its deploy, 3 trials (target < 10 s).

The corpus has only ResNet-50's deploy, so its train_val is generated from it here,
the way the original was written: the net-level input becomes two Data layers
(TRAIN and TEST, crop 224, mean values), every BatchNorm loses `use_global_stats`
and gets the three `param { lr_mult: 0 }`, convolutions and the classifier get
fillers and lr_mults, and the final Softmax becomes SoftmaxWithLoss plus a TEST-phase
Accuracy. Then `bnlint verify train_val deploy` runs in-process (seeded weights,
batch 2 at 224x224) and the wall time of the whole command is printed, best of
--repeat runs, along with the verdict.

    PYTHONPATH=src python benchmarks/verify.py [--trials 3] [--repeat 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO.parent / "shared" / "corpus" / "deep-residual-networks" / "ResNet-50-deploy.prototxt"
TARGET_SECONDS = 10.0

_DATA_LAYERS = """\
layer {
\tname: "data"
\ttype: "Data"
\ttop: "data"
\ttop: "label"
\tinclude { phase: %(phase)s }
\ttransform_param {
\t\tmirror: %(mirror)s
\t\tcrop_size: 224
\t\tmean_value: 104
\t\tmean_value: 117
\t\tmean_value: 123
\t}
\tdata_param { source: "ilsvrc12_%(split)s_lmdb" batch_size: %(batch)d backend: LMDB }
}
"""

_LOSS_LAYERS = """\
layer {
\tbottom: "fc1000"
\tbottom: "label"
\ttop: "loss"
\tname: "loss"
\ttype: "SoftmaxWithLoss"
}

layer {
\tbottom: "fc1000"
\tbottom: "label"
\ttop: "accuracy"
\tname: "accuracy"
\ttype: "Accuracy"
\tinclude { phase: TEST }
}
"""


def train_val_from_deploy(deploy: str) -> str:
    """ResNet-50's train_val, rebuilt from its deploy text (see the module docstring)."""
    header, _, body = deploy.partition("\nlayer {")
    header = re.sub(r'^input: .*\n|^input_dim: .*\n', "", header + "\n", flags=re.M)
    blocks = ["layer {" + block for block in body.split("\nlayer {")]
    out = [header.rstrip() + "\n\n",
           _DATA_LAYERS % {"phase": "TRAIN", "mirror": "true", "split": "train", "batch": 32},
           "\n",
           _DATA_LAYERS % {"phase": "TEST", "mirror": "false", "split": "val", "batch": 10}]
    for block in blocks:
        kind = re.search(r'type: "(\w+)"', block).group(1)
        if kind == "BatchNorm":
            block = re.sub(r"\s*use_global_stats: true", "", block)
            block = block.replace("\tbatch_norm_param {",
                                  "\tparam { lr_mult: 0 }\n" * 3 + "\tbatch_norm_param {", 1)
        elif kind == "Convolution":
            block = block.replace("\tconvolution_param {",
                                  "\tparam { lr_mult: 1 decay_mult: 1 }\n"
                                  "\tconvolution_param {\n"
                                  "\t\tweight_filler { type: \"msra\" }", 1)
        elif kind == "InnerProduct":
            block = block.replace("\tinner_product_param {",
                                  "\tparam { lr_mult: 1 decay_mult: 1 }\n"
                                  "\tparam { lr_mult: 2 decay_mult: 0 }\n"
                                  "\tinner_product_param {\n"
                                  "\t\tweight_filler { type: \"gaussian\" std: 0.01 }\n"
                                  "\t\tbias_filler { type: \"constant\" value: 0 }", 1)
        elif kind == "Softmax":
            block = _LOSS_LAYERS
        out.append("\n" + block.rstrip() + "\n")
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="write the generated train_val here")
    args = parser.parse_args()
    if not DEPLOY.is_file():
        print(f"skipped: {DEPLOY} not found (../shared is not next to this clone)")
        return 0

    from bnlint.caffe.netfile import load_net
    from bnlint.forward.verify import CANNOT_VERIFY, VerifyOptions, verify

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        train_val = folder / "ResNet-50-train_val.prototxt"
        train_val.write_text(train_val_from_deploy(DEPLOY.read_text()))
        times, cpu = [], []
        for _ in range(args.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            report = verify(load_net(str(train_val), refusal=CANNOT_VERIFY),
                            load_net(str(DEPLOY), refusal=CANNOT_VERIFY),
                            VerifyOptions(trials=args.trials))
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    best = min(times)
    inputs = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in report.inputs.items())
    print(f"ResNet-50 train_val vs deploy: {args.trials} trials, inputs {inputs}")
    print(f"  layers run: A {report.layers_a}, B {report.layers_b}; B reused A's computation "
          f"{report.reused} times")
    print(f"  outputs: " + ", ".join(f"{o.a_name} max abs {o.max_abs:.3g}"
                                     for o in report.outputs))
    print(f"  verdict: {'equivalent' if report.equivalent else 'NOT equivalent'}")
    print(f"  time: best {best:.2f} s of {len(times)}, CPU {min(cpu):.2f} s, all threads "
          f"(target < {TARGET_SECONDS:.0f} s): {'ok' if best < TARGET_SECONDS else 'TOO SLOW'}")
    return 0 if report.equivalent and best < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
