"""How many nets `bnlint export onnx` exports faithfully: every deploy net of
../shared/corpus and every net of ../shared/golden, at opsets 13, 17 and the default.

Corpus nets get seeded trained-like weights (`forward.verify.realistic_blobs`: He-scaled
convolutions, BatchNorm statistics stored times 999.982, Scale gamma in [0.5, 1.5]); the
export's own verification then compares onnxruntime with bnlint's forward (batch >= 2
and the written batch). Golden nets use the weights real Caffe ran, and the exported
model (dynamic batch) is also run on the golden inputs and compared with real Caffe's
outputs within the golden tolerance. Per net and opset it prints: whether bnlint's
forward runs it, exported (or the refusal), checker, onnxruntime matches, the first
diverging blob, and (golden) the match with Caffe.

    PYTHONPATH=src python benchmarks/export_onnx.py [--opsets 13,17,default] [--only NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GOLDEN = SHARED / "golden"


def deploy_nets() -> list[Path]:
    rows = (CORPUS / "MANIFEST.tsv").read_text().splitlines()[1:]
    return [CORPUS / row.split("\t")[0] for row in rows
            if len(row.split("\t")) > 5 and row.split("\t")[5] == "deploy"]


def golden_nets() -> list[Path]:
    return sorted(p.parent for p in GOLDEN.glob("**/net.prototxt"))


def golden_case(folder: Path):
    """(net, weights path, inputs, reference outputs) of a golden folder."""
    import numpy as np

    with np.load(folder / "inputs.npz") as data:
        inputs = {k: data[k] for k in data.files}
    with np.load(folder / "outputs.npz") as data:
        refs = {k: data[k] for k in data.files}
    return folder / "net.prototxt", folder / "weights.caffemodel", inputs, refs


def opencv_cases():
    """OpenCV's Caffe layer tests: input blob `input`, reference for blob `output`."""
    import numpy as np

    folder = GOLDEN / "opencv_layers"
    for net in sorted(folder.glob("*.prototxt")):
        stem = net.stem
        reference = folder / f"{stem}.npy"
        own_input = folder / f"{stem}.input.npy"
        inputs = {"input": np.load(own_input if own_input.exists() else folder / "blob.npy")}
        refs = {"output": np.load(reference)} if reference.exists() else {}
        weights = folder / f"{stem}.caffemodel"
        yield net, weights if weights.exists() else None, inputs, refs


def seeded_weights(text_file, shapes=None, seed: int = 0):
    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.caffe.net import NetState, net_view
    from bnlint.forward.executor import Network
    from bnlint.forward.verify import layer_rng, realistic_blobs

    view = net_view(text_file)
    state = NetState()
    filled = Network(view, state, input_shapes=with_inferred_inputs(view, state, shapes)).blobs
    by_name = {lv.name: lv for lv in view.layers}
    return {name: realistic_blobs(by_name[name].message, [b.shape for b in blobs],
                                  layer_rng(seed, name))
            for name, blobs in filled.items() if blobs}


def short(message: str, width: int = 70) -> str:
    message = message.replace("\n", " ")
    return message if len(message) <= width else message[:width - 3] + "..."


def try_export(text_file, weights, opset, golden, input_shapes=None, until=None) -> dict:
    import numpy as np

    from bnlint.errors import BnlintError
    from bnlint.export.onnx.export import ExportOptions, export_onnx
    from bnlint.export.onnx.model import ExportMismatch
    from bnlint.forward.compare import golden_close, opencv_close

    row = {"exported": "no", "checker": "-", "ort": "-", "first": "", "caffe": "-", "why": ""}
    start = time.perf_counter()
    try:
        result = export_onnx(text_file, weights, ExportOptions(
            opset=opset, dynamic_batch=golden is not None, input_shapes=input_shapes,
            until=until))
    except ExportMismatch as err:
        row.update(checker="fail" if err.stage == "checker" else "pass",
                   ort="fail" if err.stage != "checker" else "-",
                   first=err.first_blob or "", why=short(err.message))
        row["seconds"] = time.perf_counter() - start
        return row
    except BnlintError as err:
        row["why"] = short(err.message)
        row["seconds"] = time.perf_counter() - start
        return row
    row.update(exported="yes", checker="pass", ort="yes")
    row["seconds"] = time.perf_counter() - start
    if golden is not None:
        import onnxruntime as ort

        given, refs = golden
        session = ort.InferenceSession(result.model, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        inputs = {k: np.asarray(v, np.float32) for k, v in given.items() if k in wanted}
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(names, inputs)))
        keys = [k for k in refs if k in got]
        # OpenCV's layer tests use its absolute rule, and keep InnerProduct 2-D.
        close = opencv_close if "output" in refs else golden_close
        bad = [k for k in keys if not close(got[k].reshape(refs[k].shape)
                                            if got[k].size == refs[k].size else got[k],
                                            refs[k]).ok]
        row["caffe"] = "yes" if keys and not bad else (f"no ({', '.join(bad)})" if bad else "-")
    return row


DETECTION_REFUSAL = "(DetectionOutput)"


def forward_runs(text_file, weights, shapes) -> None:
    """Build and run bnlint's forward once (BnlintError if it cannot)."""
    import numpy as np

    from bnlint.caffe.inputs import with_inferred_inputs
    from bnlint.caffe.net import NetState, net_view
    from bnlint.forward.executor import Network

    view = net_view(text_file)
    state = NetState()
    network = Network(view, state, weights,
                      input_shapes=with_inferred_inputs(view, state, shapes))
    network.run({name: np.zeros(shape, np.float32)
                 for name, shape in network.input_shapes().items()})


def detection_inputs(text_file) -> list[str]:
    from bnlint.caffe.net import net_view

    layer = next(lv for lv in net_view(text_file).layers if lv.type == "DetectionOutput")
    return layer.bottoms


def print_row(name: str, opset: int, row: dict) -> None:
    why = f" ({row['why']})" if row["why"] and row["exported"] == "no" else ""
    print(f"| {name} | {opset} | yes | {row['exported']}{why} | {row['checker']} | "
          f"{row['ort']} | {row['first']} | {row['caffe']} | {row['seconds']:.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opsets", default="13,17,default")
    parser.add_argument("--only", default="", help="run only nets whose path contains this")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from bnlint.caffe.load import parse_text
    from bnlint.caffe.weights import read_weights
    from bnlint.errors import BnlintError
    from bnlint.export.onnx.model import default_opset
    from bnlint.files import read_text

    opsets = [default_opset() if o == "default" else int(o) for o in args.opsets.split(",")]
    jobs = [(p, None, None) for p in deploy_nets()]
    jobs += [(net, w, (inputs, refs)) for net, w, inputs, refs in
             [golden_case(g) for g in golden_nets()] + list(opencv_cases())]
    jobs = [j for j in jobs if args.only in str(j[0])]
    print("| net | opset | forward runs | exported | checker | onnxruntime matches | "
          "first diverging blob | matches real Caffe | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = {o: [0, 0] for o in opsets}
    for path, weights_path, golden in jobs:
        name = str(path.relative_to(SHARED))
        shapes = ({k: v.shape for k, v in golden[0].items()} if golden is not None
                  and "opencv_layers" in name else None)
        try:
            text_file = parse_text(read_text(str(path)))
            weights = (read_weights(str(weights_path)) if weights_path is not None
                       else seeded_weights(text_file, shapes))
            forward_runs(text_file, weights, shapes)
        except (BnlintError, MemoryError) as err:
            message = err.message if isinstance(err, BnlintError) else "out of memory"
            print(f"| {name} | | no: {short(message)} | | | | | | |", flush=True)
            continue
        for opset in opsets:
            row = try_export(text_file, weights, opset, golden, shapes)
            heads = DETECTION_REFUSAL in row["why"]
            totals[opset][1] += 1
            totals[opset][0] += row["exported"] == "yes"
            print_row(name, opset, row)
            if heads:
                until = detection_inputs(text_file)
                print_row(f"{name} --until {','.join(until)}", opset,
                          try_export(text_file, weights, opset, golden, shapes, until))
    for opset, (done, runs) in totals.items():
        print(f"opset {opset}: {done}/{runs} nets the forward runs exported and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
