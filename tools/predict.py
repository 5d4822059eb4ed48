"""Classify images with an exported model or a run's weights: top-k classes with probabilities.

    python tools/predict.py -m MODEL IMAGE_OR_FOLDER ... [-k 5] [--batch-size 64] [--csv PATH] [--force]
    python tools/predict.py -m MODEL --test-split [--data-file F] [--limit N]

MODEL is an export folder written by tools/export.py (run with Paddle Inference) or a finished
run folder <output_dir>/<experiment>/<model>/seed<N> (its best weights, or --weights final, run
in dygraph). Images are read with OpenCV (BGR converted to RGB) and prepared with the model's
eval transform, read from export.json or the run's config.yaml: an image that is not 32 x 32 is
first resized to 32 x 32 (the CIFAR-10 side the model learnt from; INTER_AREA, stretched), then
as the preset says (notebook / plain: resized to 128 px; cifar: kept at 32 px), normalized with
the preset's mean and std. A folder's files are tried in name order (not recursive); each one
OpenCV cannot decode gets one warning line and is skipped. A file named on the command line that
cannot be decoded is an error. --test-split classifies the test split of the model's data set
(CIFAR-10 or CIFAR-100, as its run trained) from --data-file, else the model's run's data file,
else the embedded CIFAR-10 sample (CIFAR-100: BA_NET_CIFAR100 or Paddle's cache), with the true class.

Prints a table (the first --show rows) and the images/s, and writes every row to a CSV, by default
predictions.csv in the current folder (never beside the model: an export or run folder is not
written to); an existing CSV is replaced only with --force. Columns: image, true_class (empty for
files), then top<i>_index, top<i>_class, top<i>_prob for i = 1..k.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net.errors import BaNetError, OutputError  # noqa: E402
from ba_net.runtime import setup_logging  # noqa: E402

DEFAULT_CSV = "predictions.csv"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    parser.add_argument("-m", "--model", required=True, help="export folder (tools/export.py) or finished run folder")
    parser.add_argument("--weights", metavar="best|final", help="weights of a run folder (default best)")
    parser.add_argument("--test-split", action="store_true", help="classify the test split of the model's "
                        "data set (CIFAR-10 or CIFAR-100) instead of files")
    parser.add_argument("--data-file", help="the data set's tarball for --test-split (default: the model's run's "
                        "data file, else the embedded CIFAR-10 sample)")
    parser.add_argument("--limit", type=int, metavar="N", help="--test-split: only its first N images")
    parser.add_argument("-k", "--top-k", type=int, default=5, metavar="K", help="classes per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--csv", default=DEFAULT_CSV, metavar="PATH",
                        help=f"where to write every prediction (default: {DEFAULT_CSV} in the current folder)")
    parser.add_argument("--force", action="store_true", help="replace an existing CSV")
    parser.add_argument("--show", type=int, default=20, metavar="N", help="rows of the table on screen (default 20; "
                        "0: none, -1: all)")
    args = parser.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ba_net.report.predictions")
    try:
        return _predict(args, log)
    except BaNetError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: nothing written")
        return 130


def _predict(args, log) -> int:
    from ba_net.files import atomic_write_text
    from ba_net.deploy.predict import (file_items, load_classifier, predict_items, predictions_csv, predictions_table,
                                split_items)

    if args.test_split == bool(args.inputs):
        raise BaNetError("pass image files / folders or --test-split (one of the two)")
    if args.limit is not None and (not args.test_split or args.limit < 1):
        raise BaNetError("--limit N (N >= 1) goes with --test-split")
    if args.data_file and not args.test_split:
        raise BaNetError("--data-file goes with --test-split")
    if args.top_k < 1 or args.batch_size < 1:
        raise BaNetError("-k and --batch-size must be at least 1")
    csv_path = Path(args.csv)
    if csv_path.is_dir():
        raise OutputError(csv_path, "it is a folder", "pass --csv a file path")
    if csv_path.exists() and not args.force:
        raise OutputError(csv_path, "it exists", "pass --force to replace it, or --csv another file")
    items = None if args.test_split else file_items(args.inputs)
    classifier = load_classifier(args.model, args.weights)
    if args.test_split:
        items, source = split_items(args.data_file, classifier.spec.get("data_file"), args.limit,
                                    classifier.spec.get("dataset") or "cifar10")
        log.info("test split of %s: %d images", source, len(items))
    log.info("model: %s; transform: preset %s, %d px", classifier.source, classifier.spec["transform"]["preset"],
             classifier.spec["transform"]["image_size"])
    result = predict_items(classifier, items, args.batch_size, args.top_k)
    atomic_write_text(csv_path, predictions_csv(result))
    if args.show:
        print(predictions_table(result, None if args.show < 0 else args.show))
    truth = [r for r in result["rows"] if r["true_class"]]
    accuracy = (f"; top-1 accuracy {sum(r['top'][0][1] == r['true_class'] for r in truth) / len(truth):.4f}"
                if truth else "")
    skipped = f", {len(result['skipped'])} unreadable file(s) skipped" if result["skipped"] else ""
    print(f"{result['images']} images{skipped} in {result['seconds']:.2f} s: {result['img_s']:.1f} img/s end to end "
          f"(reading, transform, forward; batch {args.batch_size}), {result['forward_img_s']:.1f} img/s forward "
          f"only{accuracy}")
    print(f"predictions (top-{result['k']}) written to {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
