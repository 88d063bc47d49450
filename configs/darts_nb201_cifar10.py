"""DARTS on the NAS-Bench-201 / NATS-Bench topology space, CIFAR-10, as NAS-Bench-201 ran it.

NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 5; AutoDL-Projects
``scripts-search/NAS-Bench-201-algos/DARTS-V1.sh`` and
``configs/nas-benchmark/algos/DARTS.config``): C=16, N=5 cells per stage, one shared
cell of 6 edges x 5 ops; the 50k CIFAR-10 training images split in two halves (weights
/ architecture); batch 64, 50 epochs; weights by SGD with Nesterov momentum 0.9, lr
0.025 cosine to 0.001, weight decay 5e-4, gradient clipping 5; alpha by Adam 3e-4,
betas (0.5, 0.999), weight decay 1e-3; random crop 4 + flip on both halves.  The
cell is derived by NAS-Bench-201's rule (per edge the argmax over all 5 ops).  A GPU
run, with the benchmark's accuracy of the found cell at the end:

    jaxnas search --config configs/darts_nb201_cifar10.py --workdir runs/darts_nb201 \
        --set search.nats_bench=$TORCH_HOME/NATS-tss-v1_0-3ffb9-simple

First order (NAS-Bench-201's "DARTS-V1"); ``--set search.order=second`` is "DARTS-V2"
(exact hypergradient here; the benchmark ran the finite-difference one:
``--set search.hypergradient=finite_difference``).  Without the benchmark file,
retrain the cell: ``jaxnas train --config configs/eval_nb201_cifar10.py --genotype
runs/darts_nb201/genotype.json --workdir runs/darts_nb201/retrain``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("darts")
    config.seed = 0

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.space = "nb201"
    config.model.primitives = "nb201"
    config.model.init_channels = 16
    config.model.layers = 5  # N: cells per stage

    config.optim.w_lr = 0.025
    config.optim.w_lr_min = 0.001
    config.optim.w_momentum = 0.9
    config.optim.w_nesterov = True
    config.optim.w_weight_decay = 5e-4
    config.optim.grad_clip = 5.0
    config.optim.a_lr = 3e-4
    config.optim.a_weight_decay = 1e-3

    config.search.epochs = 50
    config.search.order = "first"
    config.search.nats_bench = ""  # path of the NATS-Bench topology archive, if you have it

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
