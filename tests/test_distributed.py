"""Data parallel: a real 2-process CPU launch, and the rule that only rank 0 writes."""


from ba_net import engine, runs
from ba_net import data as D
from ba_net.config import load_config
from helpers import read_history, run_tool, tiny_config


def test_two_process_cpu_launch_completes(tmp_path, cifar_subset):
    out = tmp_path / "out"
    r = run_tool(["-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "logs"),
                  "tools/train.py", "-c", "experiments/quick.yaml", "-o", f"output_dir={out}",
                  "-o", f"data.data_file={cifar_subset}", "-o", "models=[ba_alexnet]", "-o", "seeds=[3]",
                  "-o", "train.epochs=1", "-o", "train.max_steps_per_epoch=2", "-o", "train.batch_size=8",
                  "-o", "data.num_workers=0", "-o", "train.log_every=1"], timeout=600)
    worker_logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert r.returncode == 0, r.stderr[-2000:] + worker_logs[-2000:]
    folder = out / "quick" / "ba_alexnet" / "seed3"
    h = read_history(folder)
    assert h["status"] == "finished" and h["world_size"] == 2
    assert [i["iter"] for i in h["iters"]] == [1, 2]  # steps per epoch are per process
    assert 0 <= h["epochs"][0]["val_acc"] <= 1
    assert (folder / "final.pdparams").is_file()
    assert "2 process(es)" in worker_logs


def test_only_rank_zero_writes(tmp_path, cifar_subset, monkeypatch):
    class Rank1(engine._Distributed):
        def __init__(self):
            self.world, self.rank = 1, 1  # rank 1 of a (reduction-free) job

    monkeypatch.setattr(engine, "_Distributed", Rank1)
    cfg = load_config(None, base=tiny_config(tmp_path, cifar_subset, train={"epochs": 1, "max_steps_per_epoch": 1}))
    folder = runs.run_folder(cfg, "alexnet", 0)
    splits = {s: D.read_cifar10(cifar_subset, s) for s in ("train", "test")}
    history = engine.train_run(cfg, "alexnet", 0, folder, splits)
    assert history["status"] == "finished" and len(history["epochs"]) == 1
    assert not (tmp_path / "out").exists()
