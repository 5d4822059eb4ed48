"""Compare the runs of one experiment: accuracy over seeds, parameters, multiply-accumulates,
throughput, curves.

    python tools/compare.py output/quick                       # an experiment folder
    python tools/compare.py -c experiments/quick.yaml [-o ...]  # the experiment that config trains
        [--out DIR] [--baseline MODEL] [--aa MODEL] [--no-throughput] [--throughput-settings KEY=N,...]

Writes comparison.json / .md / .csv, curves_loss.png, curves_acc.png, predictions.png,
confusion.png, per_class.csv and per_class.png into the experiment folder (or --out DIR), and
prints the table and one sentence per model: the difference to the baseline, whether it stands out
from seed noise, the smallest difference the seeds run can detect and the seeds needed to detect
the observed one. --aa MODEL adds the A/A control (MODEL's seeds in two halves, at least 4 seeds).
Each model whose seeds ran with different configs, Paddle versions or devices gets one warning
line. Only finished runs enter the statistics; running, interrupted and failed ones are listed as
such; an experiment without a finished run is refused and nothing is written.
Throughput defaults: batch 128, 3 warm-up and 5 timed passes, the whole test split;
--throughput-settings changes them for quick checks, e.g.
--throughput-settings batch_size=8,warmup=1,repeats=2,max_batches=1.
Exit codes: 0 done, 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tool_setup  # noqa: E402,F401  (the checkout on sys.path, then ba_net, or a one-line error)
from ba_net import cli  # noqa: E402
from ba_net.report.command import compare_command  # noqa: E402


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("experiment", nargs="?", help="experiment folder: <output_dir>/<experiment>")
    parser.add_argument("-c", "--config", help="compare the experiment this config trains (instead of a folder)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of -c's config, as tools/train.py does (repeatable)")
    cli.add_out(parser, "default: the experiment folder")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput measurements")
    parser.add_argument("--throughput-settings", default="", metavar="KEY=N,...",
                        help="change the throughput measurement (batch_size, warmup, repeats, max_batches, ...)")
    parser.add_argument("--baseline", help="model the others are compared with (default: alexnet if it ran, else "
                        "the first model by name without attention, e.g. resnet20)")
    parser.add_argument("--aa", metavar="MODEL", help="A/A control: compare the first half of MODEL's seeds with "
                        "the second (needs >= 4 finished seeds)")
    return cli.run(compare_command, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
