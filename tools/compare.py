"""Compare the runs of one experiment: accuracy, parameters, multiply-accumulates, throughput, curves.

    python tools/compare.py <output_dir>/<experiment> [--out DIR] [--no-throughput] [--baseline MODEL]
                            [--aa MODEL]

Writes comparison.json / .md / .csv, curves_loss.png, curves_acc.png, predictions.png,
confusion.png, per_class.csv and per_class.png into the experiment folder (or --out), and prints
the table and one sentence per model: the difference to the baseline, whether it stands out from
seed noise, the smallest difference the seeds run can detect and the seeds needed to detect the
observed one. --aa MODEL adds the A/A control (MODEL's seeds in two halves, at least 4 seeds).
Each model whose seeds ran with different configs, Paddle versions or devices gets one warning
line. Only finished runs enter the statistics; running and failed ones are listed as such.
Throughput defaults: batch 128, 3 warm-up and 5 timed passes, the whole test split;
--throughput-settings changes them for quick checks, e.g.
--throughput-settings batch_size=8,warmup=1,repeats=2,max_batches=1.
"""
import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net.errors import BaNetError  # noqa: E402
from ba_net.report.compare import ThroughputSettings, compare_experiment  # noqa: E402
from ba_net.runtime import setup_logging  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment folder: <output_dir>/<experiment>")
    parser.add_argument("--out", help="write the outputs here instead of the experiment folder")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput measurements")
    parser.add_argument("--throughput-settings", default="", metavar="KEY=N,...",
                        help="change the throughput measurement (batch_size, warmup, repeats, max_batches, ...)")
    parser.add_argument("--baseline", help="model the others are compared with (default: alexnet if it ran, else "
                        "the first model by name without attention, e.g. resnet20)")
    parser.add_argument("--aa", metavar="MODEL", help="A/A control: compare the first half of MODEL's seeds with "
                        "the second (needs >= 4 finished seeds)")
    args = parser.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ba_net.compare")
    try:
        throughput = None if args.no_throughput else ThroughputSettings.parse(args.throughput_settings)
        summary = compare_experiment(args.experiment, args.out, baseline=args.baseline, throughput=throughput,
                                     aa=args.aa)
        out = Path(args.out or args.experiment)
    except BaNetError as exc:
        log.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    lines = (out / "comparison.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start:next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))]
    print("\n".join(table))  # the first table: the comparison
    sentences = [r["conclusion"] for r in summary["rows"] if r.get("conclusion")]
    sentences += [summary["aa"]["sentence"]] if summary.get("aa") else []
    print("\n" + "\n".join(sentences))
    print(f"\nresults in {out}/: comparison.md (table, conclusions, reproducibility, method), comparison.csv/.json, "
          f"curves_*.png, predictions.png, confusion.png, per_class.csv/.png; "
          f"dashboards: visualdl --logdir {Path(args.experiment).parent} --host 127.0.0.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
