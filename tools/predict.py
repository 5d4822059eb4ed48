"""Classify images with an exported model or a run's weights: top-k classes with probabilities.

    python tools/predict.py -m MODEL IMAGE_OR_FOLDER ... [-k 5] [--batch-size 64] [--out DIR] [--force]
    python tools/predict.py -m MODEL --test-split [--data-file F] [--limit N]

MODEL is an export folder written by tools/export.py (run with Paddle Inference) or a finished
run folder <output_dir>/<experiment>/<model>/seed<N> (its best weights, or --weights final, run
in dygraph). Images are read with OpenCV (BGR converted to RGB) and prepared with the transform
the export declares (export.json; for a run folder, the one its export would declare), exactly
as PaddleX prepares them from the export's inference.yml: one resize straight to the model's
side, stretched, not cropped (notebook / plain: 128 px, bilinear; cifar: 32 px, INTER_AREA; a
32 x 32 CIFAR image gets exactly the preset's eval transform), normalized with the preset's mean
and std. A folder's files are tried in name order (not recursive); each one OpenCV cannot decode
gets one warning line and is skipped. A file named on the command line that cannot be decoded is
an error. An export of an earlier ba-net (model.json) is refused with the command that exports
the run again. --test-split classifies the test split of the model's data set (CIFAR-10 or
CIFAR-100, as its run trained) from --data-file, else the model's run's data file, else the
embedded CIFAR-10 sample (CIFAR-100: BA_NET_CIFAR100 or Paddle's cache), with the true class.

Prints a table (the first --show rows) and the images/s, and writes every row to
DIR/predictions.csv (--out DIR, default the current folder; never beside the model: an export or
run folder is not written to); an existing predictions.csv is replaced only with --force.
Columns: image, true_class (empty for files), then top<i>_index, top<i>_class, top<i>_prob for
i = 1..k. Exit codes: 0 done, 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net import cli  # noqa: E402
from ba_net.deploy.command import predict_command  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    parser.add_argument("-m", "--model", required=True, help="export folder (tools/export.py) or finished run folder")
    parser.add_argument("--weights", metavar="best|final", help="weights of a run folder (default best)")
    parser.add_argument("--test-split", action="store_true", help="classify the test split of the model's "
                        "data set (CIFAR-10 or CIFAR-100) instead of files")
    cli.add_data_file(parser, "for --test-split; default: the model's run's data file, else the embedded CIFAR-10 "
                      "sample")
    parser.add_argument("--limit", type=int, metavar="N", help="--test-split: only its first N images")
    parser.add_argument("-k", "--top-k", type=int, default=5, metavar="K", help="classes per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    cli.add_out(parser, "predictions.csv; default: the current folder")
    cli.add_force(parser, "predictions.csv")
    parser.add_argument("--show", type=int, default=20, metavar="N", help="rows of the table on screen (default 20; "
                        "0: none, -1: all)")
    return cli.run(predict_command, parser.parse_args(argv), interrupted="nothing written")


if __name__ == "__main__":
    sys.exit(main())
