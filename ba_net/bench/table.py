"""The benchmark's printed report: :func:`format_table` turns the result of
:func:`ba_net.bench.benchmark.run_benchmark` into the header (machine, GEMM rates, the PyTorch peer, the
yardstick), the table of rows, the per-model table, BA's overhead and the method; and the rows'
derived columns (:func:`yardstick`, :func:`vs_pytorch`, :func:`ratios`)."""
from __future__ import annotations

from ba_net.bench.rows import ba_pairs


def row_label(row: dict) -> str:
    """A row's path, with its loader workers when it has any."""
    return row["path"] + (f" ({row['workers']} workers)" if row.get("workers") else "")


def yardstick(result: dict) -> float:
    """The best rate measured in this run (GFLOP/s), into result["yardstick"], and each row's
    share of it (``pct_best``): the candidates are the fp32 GEMM rates in result["gemm"] (Paddle,
    NumPy, PyTorch if measured) and every row's own rate, 6 x MACs x img/s for training rows and
    2 x MACs x img/s for evaluation rows (MACs: the row model's forward multiply-accumulates per
    image). A row's share is its rate over the yardstick, so it is at most 100."""
    candidates = {f"fp32 GEMM ({name})": rate for name, rate in result["gemm"].items()
                  if isinstance(rate, (int, float))}
    for r in result["rows"]:
        factor = 6 if r["section"].startswith("train") else 2
        r["gflops"] = factor * result["macs_per_image"][r["model"]] * r["img_s"] / 1e9
        candidates[f"{r['section']} {r['model']} {row_label(r)}"] = r["gflops"]
    source = max(candidates, key=candidates.get)
    best = candidates[source]
    result["yardstick"] = {"gflops": best, "source": source}
    for r in result["rows"]:
        r["pct_best"] = 100.0 * r["gflops"] / best
    return best


def vs_pytorch(result: dict) -> None:
    """``vs_pytorch`` of each row of a model in a section the peer measured that model in: its
    img/s over PyTorch's best (eager or channels_last) for that model and section."""
    best = {}
    for r in result["rows"]:
        if r["path"].startswith("pytorch "):
            key = (r["section"], r["model"])
            best[key] = max(best.get(key, 0.0), r["img_s"])
    for r in result["rows"]:
        if best.get((r["section"], r["model"])):
            r["vs_pytorch"] = r["img_s"] / best[(r["section"], r["model"])]


def ratios(result: dict) -> None:
    """Ratio of each row to the notebook's way (same section and model), and BA's overhead."""
    rows = result["rows"]
    ref = {(r["section"], r["model"]): r["img_s"] for r in rows if r["path"] == "notebook"}
    for r in rows:
        base = ref.get((r["section"], r["model"]))
        r["vs_notebook"] = r["img_s"] / base if base else None
    overhead = {}
    by_key = {(r["section"], r["model"], row_label(r)): r["img_s"] for r in rows}
    for base, ba in ba_pairs(result["settings"]["models"]):
        for (section, model, label), rate in by_key.items():
            if model == ba and (section, base, label) in by_key:
                overhead.setdefault(ba, {})[f"{section} / {label}"] = 100.0 * (by_key[(section, base, label)] / rate
                                                                              - 1.0)
    result["ba_overhead_pct"] = overhead


def _fmt(value) -> str:
    return "?" if value is None else f"{value:.2f}"


def format_table(result: dict) -> str:
    """The table and the method, as printed by tools/benchmark.py."""
    m, s = result["machine"], result["settings"]
    lines = [f"ba-net benchmark, {result['date']}",
             f"machine: {m['cpu']}, {m['usable_cpus']} usable cores, device {m['device']}, Paddle {m['paddle']}; "
             f"tuned env OMP_NUM_THREADS={m['env']['OMP_NUM_THREADS']} "
             f"MKL_DEBUG_CPU_TYPE={m['env']['MKL_DEBUG_CPU_TYPE']}",
             f"fp32 GEMM {s['gemm_size']}^3, this run: Paddle {result['gemm']['paddle']:.1f} GFLOP/s (tuned env; "
             f"{result['gemm']['start']['paddle']:.1f} at the start, {result['gemm']['end']['paddle']:.1f} at the end, "
             f"the higher is used), NumPy {result['gemm']['numpy']:.1f} GFLOP/s"
             + (f", PyTorch {result['gemm']['pytorch']:.1f} GFLOP/s" if result["gemm"].get("pytorch") else ""),
             _peer_line(result),
             f"yardstick, the best rate measured in this run: {result['yardstick']['gflops']:.1f} GFLOP/s "
             f"({result['yardstick']['source']})",
             "",
             "| section | model | path | img/s | % of best | x notebook | x PyTorch |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        pct = f"{r['pct_best']:.1f}" if r.get("pct_best") is not None else ""
        ratio = f"{r['vs_notebook']:.2f}" if r.get("vs_notebook") else ""
        peer = f"{r['vs_pytorch']:.2f}" if r.get("vs_pytorch") else ""
        lines.append(f"| {r['section']} | {r['model']} | {row_label(r)} | {r['img_s']:.1f} | {pct} | {ratio} | {peer} |")
    lines += ["", *_model_table(result)]
    for ba, o in (result.get("ba_overhead_interleaved") or {}).items():
        lines += [f"{ba}'s overhead over {ba[3:]}, both models in one process, alternated step by step "
                  f"(median of paired time ratios - 1): training (fast train step) {o['train']['overhead_pct']:+.1f} %, "
                  f"eval (Paddle Inference forward) {o['eval']['overhead_pct']:+.1f} %" + _peer_overhead(result, ba)]
    for ba, per_row in (result.get("ba_overhead_pct") or {}).items():
        lines += [f"{ba} from the rows above (measured at different moments, so load drift enters): " + ", ".join(
            f"{k} {v:+.1f} %" for k, v in per_row.items())]
    lines += ["", "Method: " + _method(result)]
    return "\n".join(lines)


def _peer_overhead(result: dict, ba: str) -> str:
    """The end of BA's overhead line: the same measurement in PyTorch, when it was taken."""
    o = (result.get("peer_ba_overhead") or {}).get(ba)
    if not o or "train" not in o:
        return "."
    return (f"; in PyTorch, measured the same way: training ({o['layouts']['train']}) "
            f"{o['train']['overhead_pct']:+.1f} %, eval ({o['layouts']['eval']}) {o['eval']['overhead_pct']:+.1f} % "
            f"({o['train']['pairs']} pairs each).")


def _turns_cell(result: dict, model: str, task: str) -> str:
    """ours / PyTorch from the two taking turns (above 1: ours faster), with PyTorch's layout."""
    t = (result.get("peer_turns") or {}).get(model)
    return f"{t[task]['ours_over_pytorch']:.2f} ({t['layouts'][task]})" if t and task in t else ""


def _peer_line(result: dict) -> str:
    peer = result.get("peer")
    if not peer:
        return "PyTorch peer: not measured (torch not importable, or not on CPU / not in this suite)"
    line = (f"PyTorch peer: torch {peer['torch']}, {peer['threads']} threads, oneDNN "
            f"{'on' if peer['onednn'] else 'off'}")
    turns = result.get("peer_interleaved")
    if turns:
        t, e = turns["train"], turns["eval"]
        line += (f"; taking turns with it (two processes, ABBA, {t['turns']} turns of {t['units_per_turn']} batches "
                 f"each, medians): train step fast {t['ours_img_s']:.1f} vs PyTorch {turns['layouts']['train']} "
                 f"{t['pytorch_img_s']:.1f} img/s (ours / PyTorch {t['ours_over_pytorch']:.2f}), eval forward "
                 f"inference {e['ours_img_s']:.1f} vs PyTorch {turns['layouts']['eval']} {e['pytorch_img_s']:.1f} "
                 f"img/s ({e['ours_over_pytorch']:.2f})")
    others = [m for m in (result.get("peer_turns") or {}) if m != "alexnet"]
    if others:
        t = result["peer_turns"][others[0]]["train"]
        line += (f"; {', '.join(others)}: ours and PyTorch's faster layout taking turns (two processes, ABBA, "
                 f"{t['turns']} turns each, medians), ours / PyTorch in the model table")
    return line


def _model_table(result: dict) -> list:
    """One row per model: input, batch, MACs, params, the fast train step and the eval forward
    (Paddle Inference on CPU), and BA's overhead over its plain model (from the interleaved
    measurement)."""
    cpu = result["machine"]["device"].startswith("cpu")
    train_path, eval_path = ("fast", "inference") if cpu else ("dygraph", "dygraph")
    rate = {(r["section"], r["model"]): r["img_s"] for r in result["rows"]
            if (r["section"], r["path"]) in (("train step", train_path), ("eval fwd", eval_path))}
    inter = result.get("ba_overhead_interleaved") or {}
    peer_over = {m: o for m, o in (result.get("peer_ba_overhead") or {}).items() if "train" in o}
    turns = set(result.get("peer_turns") or {}) & set(result["settings"]["models"])
    lines = [f"| model | input | batch | MACs / image | params | train step img/s ({train_path}) | "
             + ("ours / PyTorch train (turns) | " if turns else "") + f"eval fwd img/s ({eval_path}) | "
             + ("ours / PyTorch eval (turns) | " if turns else "") + "BA overhead train / eval |"
             + (" PyTorch's BA overhead train / eval |" if peer_over else ""),
             "|---|---:|---:|---:|---:|---:|" + "---:|" * (2 * bool(turns) + 2 + bool(peer_over))]
    for m in result["settings"]["models"]:
        i = result["input"][m]
        over = [f"{o[m]['train']['overhead_pct']:+.1f} % / {o[m]['eval']['overhead_pct']:+.1f} %" if m in o else ""
                for o in (inter, peer_over)]
        cells = [f"{rate[(s, m)]:.1f}" if (s, m) in rate else "" for s in ("train step", "eval fwd")]
        if turns:
            cells = [cells[0], _turns_cell(result, m, "train"), cells[1], _turns_cell(result, m, "eval")]
        lines.append(f"| {m} | {i['image_size']} px | {i['batch_size']} | {result['macs_per_image'][m]:,} | "
                     f"{result['params'][m]['trainable']:,} | {' | '.join(cells)} | {over[0]} |"
                     + (f" {over[1]} |" if peer_over else ""))
    return lines + [""]


def _method(result: dict) -> str:
    """How every figure of the table was measured."""
    s = result["settings"]
    load = result.get("load_average_1min", {})
    sizes = ", ".join(f"{m} {i['image_size']} px, batch {i['batch_size']}" for m, i in result.get("input", {}).items())
    return " ".join([
        f"each model at its input size with its batch ({sizes}); each figure is the median of {s['repeats']} "
        f"repeats of {s['steps']} steps (or batches; {s['large_steps']} for the 224 px models) after "
        f"{s['warmup']} untimed warm-up steps (eval and e2e: one untimed pass, the eval pass after one untimed "
        "batch).",
        "train step: forward + backward + optimizer update (Adam, the config's defaults) on one synthetic batch.",
        *(["Models built with a 10-class head (as trained here; the ImageNet-form counts are those of a "
           "1000-class model minus the head's difference)."] if s.get("suite") == "resnet" else [
            "train e2e: the engine's train_epoch over the CIFAR-10 training split, loading.build_loader with the "
            "per-image augmentation of the model's preset (notebook for 128 px, cifar for 32 px; 0 loader workers "
            "unless the row says otherwise; the config default data.num_workers is measured too).",
            "eval fwd: eval-mode forward on one synthetic batch; eval pass: the notebook's throughput cell, an "
            "eval pass over the test split with the preset's eval transform (resize and normalization) in the "
            "loader" + (f" (capped at {s['eval_batches']} batches)" if s.get("eval_batches") else "") + "."]),
        ("Every row is measured in a fresh subprocess (paths left in one process slow each other down). "
         if not s.get("quick") else "Quick mode (a smoke run): the notebook's rows run one after the other in one "
         "subprocess, the others in this process, where a model's rows share one trainer per path and one exported "
         "model. ") +
        "Paths: notebook = dygraph in Paddle's default environment (OMP_NUM_THREADS=1, no MKL_DEBUG_CPU_TYPE), "
        "0 loader workers; dygraph = tuned environment; to_static = paddle.jit.to_static "
        "(PIR); fast = ba_net.accel.paths (legacy static program, oneDNN convolutions); inference = paddle.jit.save + "
        "Paddle Inference with oneDNN.",
        "MACs: forward multiply-accumulates per image at the model's input size (count_macs); params: "
        "trainable parameters (paddle.summary's total, BatchNorm statistics included, in the JSON).",
        "PyTorch peer (if torch is importable): our AlexNet (ba_net/bench/torch_peer.py) and ResNets "
        "(ba_net/bench/torch_resnet.py; BA as the official code writes it, per branch Linear + BatchNorm1d) "
        "written in PyTorch, with our weights copied in giving our logits (tested), in a "
        "subprocess without Paddle, torch threads = usable cores; train step = forward + label-smoothed cross "
        "entropy + backward + Adam (same lr and weight decay) on the same batch and size, eval fwd under "
        "torch.inference_mode(); eager NCHW (pytorch eager) and channels_last; x PyTorch = img/s / PyTorch's "
        "best of the same section and model. Taking turns: our fast train step and Paddle Inference forward "
        "against PyTorch's better layout of each, in two persistent processes that run alternately (ABBA, 0.5 s "
        "apart, the other one idle), so both see the same load; ours / PyTorch = the median over pairs of "
        "PyTorch's time / ours (above 1: ours is faster)." + (
            " PyTorch's BA overhead: the BA model and its plain model in one PyTorch process, in the BA model's "
            "faster layout, alternated step by step as ours are." if result.get("peer_ba_overhead") else ""),
        "% of best = the row's rate (6 x forward MACs per image x img/s for training, 2 x for evaluation) / "
        "the best rate measured in this run: the fp32 GEMM rates (Paddle at the start and end, the higher; "
        "NumPy; PyTorch) and every row's own rate, so it never exceeds 100.",
        f"1-min load average {_fmt(load.get('before'))} before, {_fmt(load.get('after'))} after "
        f"({result.get('seconds')} s); other processes on these cores lower every figure."])


__all__ = ["format_table", "ratios", "row_label", "vs_pytorch", "yardstick"]
