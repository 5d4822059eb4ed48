"""Export a finished run to a Paddle inference model, checked against the run's own model.

    python tools/export.py RUN_DIR [--weights best|final] [--out DIR] [--force] [--onnx]
    python tools/export.py --verify EXPORT_DIR

RUN_DIR is a run folder, <output_dir>/<experiment>/<model>/seed<N>, of a finished run. The export
goes to <output_dir>/export/<experiment>-<model>-seed<N>-<weights>/ (or --out): model.json and
model.pdiparams (paddle.jit.save, input "images" [N, 3, S, S] float32 RGB, normalized), and
export.json (the eval transform's preset, image size, mean and std, the class names, the model,
seed, source run, weights and Paddle version, and the parity result).

Parity check: the export is loaded with Paddle Inference and its logits on the first 64 test images
of the run's data file (else the embedded sample data/cifar-10-sample.tar.gz) are compared with the
dygraph model's; above 1e-4 x the logit scale the command fails (exit 1) and keeps nothing. The
export is written to a hidden temporary folder and renamed into place once checked; an existing
export folder is replaced only with --force. --onnx adds model.onnx (paddle2onnx), checked the same
way with ONNX Runtime when it is installed. --verify repeats the check on an existing export.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net.errors import BaNetError  # noqa: E402
from ba_net.deploy.export import export_run, verify_export  # noqa: E402
from ba_net.deploy.parity import PARITY_IMAGES, ParityError, describe_parity  # noqa: E402
from ba_net.runtime import setup_logging  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", help="finished run folder: <output_dir>/<experiment>/<model>/seed<N>")
    parser.add_argument("--weights", default="best", metavar="best|final",
                        help="which weights to export: best (by val accuracy, default) or final")
    parser.add_argument("--out", help="export folder (default: <output_dir>/export/<experiment>-<model>-seed<N>-"
                        "<weights>)")
    parser.add_argument("--force", action="store_true", help="replace an existing export folder")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx with paddle2onnx (needs "
                        "pip install paddle2onnx; checked with ONNX Runtime when installed)")
    parser.add_argument("--parity-images", type=int, default=PARITY_IMAGES, metavar="N",
                        help=f"test images in the parity batch (default {PARITY_IMAGES})")
    parser.add_argument("--data-file", help="tarball of the run's data set (CIFAR-10 or CIFAR-100) whose test split "
                        "feeds the parity check (default: the run's data file, else for CIFAR-10 the embedded sample)")
    parser.add_argument("--verify", metavar="EXPORT_DIR", help="check an existing export folder against its "
                        "source run again, write nothing")
    args = parser.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ba_net.deploy.export")
    if bool(args.run_dir) == bool(args.verify):
        log.error("error: pass either a run folder to export or --verify EXPORT_DIR")
        return 2
    try:
        if args.verify:
            result = verify_export(args.verify, args.parity_images, args.data_file)
            print(describe_parity(result))
            if result.get("onnx"):
                print(describe_parity(result["onnx"], "ONNX Runtime"))
            return 0
        spec = export_run(args.run_dir, args.weights, args.out, args.force, args.onnx, args.parity_images,
                          args.data_file)
    except ParityError as exc:
        log.error("error: %s%s", exc, "" if args.verify else "; nothing written")
        return 1
    except BaNetError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: nothing written")
        return 130
    print(f"exported {args.run_dir} ({spec['model']}, seed {spec['seed']}, {spec['weights']}.pdparams) to "
          f"{spec['export_dir']} in {spec['seconds']:.1f} s")
    print(describe_parity(spec["parity"]))
    if spec.get("onnx_parity"):
        print(describe_parity(spec["onnx_parity"], "ONNX Runtime"))
    files = ", ".join(f for f in spec["files"].values() if f)
    print(f"files: {files}, export.json (preset {spec['transform']['preset']}, {spec['transform']['image_size']} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
