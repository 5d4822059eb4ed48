"""Export a finished run to an inference model PaddleX runs as it is, checked against the run's own model.

    python tools/export.py RUN_DIR [--weights best|final] [--out DIR] [--force] [--onnx]
    python tools/export.py --verify EXPORT_DIR

RUN_DIR is a run folder, <output_dir>/<experiment>/<model>/seed<N>, of a finished run. The export
goes to <output_dir>/export/<experiment>-<model>-seed<N>-<weights>/ (or --out):
inference.json and inference.pdiparams (paddle.jit.save of the model followed by a softmax:
input "images" [N, 3, S, S] float32 RGB, normalized; output the class probabilities),
inference.yml (PaddleX's config: model name BA-Net, the pre-processing, Topk with the class
names) and export.json (the transform: one resize straight to S px, then the preset's mean and
std; the class names, the model, seed, source run, weights and Paddle version, and the parity
result). PaddleX loads the folder as it is after ba_net.register_paddlex() (docs/paddlex.md).

Parity check: the export is loaded with Paddle Inference and its probabilities on the first 64
test images of the run's data file (else the embedded sample data/cifar-10-sample.tar.gz) are
compared with the dygraph model's logits, as log-probabilities and as probabilities; above 1e-4 x
the logit scale the command fails (exit 1) and keeps nothing. The export is written to a hidden
temporary folder and renamed into place once checked; an existing export folder is replaced only
with --force. --onnx adds inference.onnx (paddle2onnx), checked the same way with ONNX Runtime
when it is installed. --verify repeats the check on an existing export; an export of an earlier
ba-net (model.json) is refused with the command that exports the run again.
Exit codes: 0 done, 1 the parity check failed, 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net import cli  # noqa: E402
from ba_net.deploy.command import export_command  # noqa: E402
from ba_net.deploy.parity import PARITY_IMAGES  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("run_dir", nargs="?", help="finished run folder: <output_dir>/<experiment>/<model>/seed<N>")
    parser.add_argument("--weights", default="best", metavar="best|final",
                        help="which weights to export: best (by val accuracy, default) or final")
    cli.add_out(parser, "the export; default: <output_dir>/export/<experiment>-<model>-seed<N>-<weights>")
    cli.add_force(parser, "the export folder")
    parser.add_argument("--onnx", action="store_true", help="also write inference.onnx with paddle2onnx (needs "
                        "pip install paddle2onnx; checked with ONNX Runtime when installed)")
    parser.add_argument("--parity-images", type=int, default=PARITY_IMAGES, metavar="N",
                        help=f"test images in the parity batch (default {PARITY_IMAGES})")
    cli.add_data_file(parser, "CIFAR-10 or CIFAR-100, whose test split feeds the parity check; default: the run's "
                      "data file, else for CIFAR-10 the embedded sample")
    parser.add_argument("--verify", metavar="EXPORT_DIR", help="check an existing export folder against its "
                        "source run again, write nothing")
    return cli.run(export_command, parser.parse_args(argv), interrupted="nothing written")


if __name__ == "__main__":
    sys.exit(main())
