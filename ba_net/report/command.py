"""tools/compare.py's command: find the experiment (a folder, or the one a config trains), refuse
one with no finished run before anything is written, compare it
(:func:`ba_net.report.compare.compare_experiment`), print the table and the sentences, and name
the files this call wrote."""
from __future__ import annotations

import argparse
from pathlib import Path

from ba_net.config import load_config
from ba_net.errors import ConfigError, RunStateError
from ba_net.report.compare import ThroughputSettings, compare_experiment
from ba_net.report.tables import comparison_table
from ba_net.runs.results import collect_runs


def experiment_dir(args: argparse.Namespace) -> Path:
    """The folder given, or ``<output_dir>/<experiment>`` of ``-c CONFIG [-o ...]``."""
    if bool(args.experiment) == bool(args.config):
        raise ConfigError("pass the experiment folder (e.g. output/quick) or -c CONFIG [-o key=value ...], one of them")
    if args.override and not args.config:
        raise ConfigError("-o overrides need -c CONFIG: they say which experiment a config trains")
    if args.experiment:
        return Path(args.experiment)
    cfg = load_config(args.config, tuple(args.override))
    return Path(cfg["output_dir"]) / cfg["experiment"]


def _stamps(folder: Path) -> dict:
    """{file name: (inode, mtime_ns, size)} of the files in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    return {p.name: (st.st_ino, st.st_mtime_ns, st.st_size) for p in folder.iterdir() if p.is_file()
            for st in [p.stat()]}


def compare_command(args: argparse.Namespace) -> int:
    folder = experiment_dir(args)
    runs = collect_runs(folder)  # a missing folder or one without runs: a RunStateError naming the fix
    if not any(r.finished for r in runs):
        states = ", ".join(sorted({f"{r.model} seed {r.seed} {r.status}" for r in runs}))
        raise RunStateError(f"{folder} has no finished run ({states}); finish one first (tools/train.py ... "
                            f"--resume continues a stopped run), nothing was written")
    throughput = None if args.no_throughput else ThroughputSettings.parse(args.throughput_settings)
    out = Path(args.out or folder)
    before = _stamps(out)
    summary = compare_experiment(folder, out, baseline=args.baseline, throughput=throughput, aa=args.aa)
    print(comparison_table(summary))
    sentences = [r["conclusion"] for r in summary["rows"] if r.get("conclusion")]
    sentences += [summary["aa"]["sentence"]] if summary.get("aa") else []
    print("\n" + "\n".join(sentences))
    written = sorted(name for name, stamp in _stamps(out).items() if before.get(name) != stamp)
    print(f"\nwrote into {out}/: {', '.join(written)}; dashboards: visualdl --logdir {folder.parent} --host 127.0.0.1")
    return 0


__all__ = ["compare_command", "experiment_dir"]
