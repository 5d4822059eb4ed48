"""Train the CIFAR-10 ablation described by a YAML file in experiments/.

    python tools/train.py -c experiments/quick.yaml [-o key=value ...] [--resume] [--force]

Runs go to <output_dir>/<experiment>/<model>/seed<seed>/. Finished runs are skipped, so running
the same command again continues an interrupted ablation; --resume continues a run that stopped
mid-way, --force reruns finished ones. Data parallel: python -m paddle.distributed.launch
--nproc_per_node 2 tools/train.py -c ...
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net.config import load_config  # noqa: E402
from ba_net.train.engine import run_experiment  # noqa: E402
from ba_net.errors import BaNetError  # noqa: E402
from ba_net.runtime import setup_logging  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="experiment YAML file")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key by dotted path, value parsed as YAML (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue runs that stopped mid-way")
    parser.add_argument("--force", action="store_true", help="rerun finished runs from scratch")
    args = parser.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ba_net.train")
    if args.resume and args.force:
        log.error("error: --resume and --force contradict each other; pass one")
        return 2
    try:
        cfg = load_config(args.config, tuple(args.override))
        summaries = run_experiment(cfg, resume=args.resume, force=args.force)
    except BaNetError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: finished epochs are saved; rerun with --resume to continue")
        return 130
    failed = [s for s in summaries if s["status"] not in ("finished", "locked")]  # locked: another process trains it
    for s in failed:
        log.error("run %s seed %s %s (see %s/history.json)", s["model"], s["seed"], s["status"], s["folder"])
    if any(s["status"] == "failed" for s in summaries):
        log.error("a non-finite loss usually means the learning rate is too high: rerun with --force and a lower "
                  "optimizer.lr (e.g. -o optimizer.lr=%g)", cfg["optimizer"]["lr"] / 10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
