"""GDAS on the NAS-Bench-201 / NATS-Bench topology space, CIFAR-10, as NAS-Bench-201 ran it.

NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 5; AutoDL-Projects
``scripts-search/NAS-Bench-201-algos/GDAS.sh`` and ``configs/nas-benchmark/algos/GDAS.config``):
C=16, N=5 cells per stage, one shared cell of 6 edges x 5 ops; the CIFAR-10 training
images split in two halves (weights / architecture); batch 64, 240 epochs; weights by
SGD with Nesterov momentum 0.9, lr 0.025 cosine to 0.001, weight decay 5e-4, gradient
clipping 5; alpha by Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3; tau 10 -> 0.1
linearly per epoch; an unsampled op adds its (zero) weight to the edge, as that code's
cell does (``search.unselected_grad="bias"``).  NAS-Bench-201 reports 93.61 % CIFAR-10
test accuracy for the cells GDAS finds there (docs/methods/gdas.md; not reproduced
here).  A GPU run, with the benchmark's accuracy of the found cell at the end:

    jaxnas search --config configs/gdas_nb201_cifar10.py --workdir runs/gdas_nb201 \
        --set search.nats_bench=$TORCH_HOME/NATS-tss-v1_0-3ffb9-simple

Without the benchmark file, retrain the cell: ``jaxnas train --config
configs/eval_nb201_cifar10.py --genotype runs/gdas_nb201/genotype.json --workdir
runs/gdas_nb201/retrain``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("gdas")
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

    config.search.epochs = 240
    config.search.tau_max = 10.0
    config.search.tau_min = 0.1
    config.search.unselected_grad = "bias"
    config.search.nats_bench = ""  # path of the NATS-Bench topology archive, if you have it

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
