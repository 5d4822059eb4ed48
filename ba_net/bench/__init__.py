"""tools/benchmark.py: throughput of the training and evaluation paths.

* :mod:`~ba_net.bench.benchmark`: the whole run (each row in a fresh subprocess, the GEMM
  yardstick, BA's overhead taking turns).
* :mod:`~ba_net.bench.rows`: what each row measures.
* :mod:`~ba_net.bench.table`: the printed report.
* :mod:`~ba_net.bench.torch_peer`: the optional PyTorch peer.

The top of the package: it may import anything public; nothing imports it.
"""
