"""DARTS search on CIFAR-10 as in the paper (Liu et al., 2019, Sec. 3.1 and A.1.1).

8 cells (reductions at cells 2 and 5), 16 initial channels, batch 64, 50 epochs on
half of the training set (the other half trains the architecture), momentum SGD
with a cosine learning rate 0.025 -> 0.001, Adam 3e-4 for alpha, random crop 4 +
horizontal flip. A GPU run:

    jaxnas search --config configs/darts_cifar10.py --workdir runs/darts_cifar10

First order by default (DARTS' "1st order", 1.5 GPU-days in the paper). For the
second-order hypergradient (Eq. 7-8, 4 GPU-days) set ``search.order = "second"``
below or pass ``--set search.order=second``; ``search.hypergradient`` picks how it
is computed ("exact" Hessian-vector product, "unrolled" jax.grad through the
virtual step, or the reference's "finite_difference").
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("darts")
    config.seed = 2

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0  # DARTS uses cutout only when retraining

    config.model.init_channels = 16
    config.model.layers = 8

    config.search.epochs = 50
    config.search.order = "first"  # "second" for DARTS (2nd order)

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0  # the whole 10k test split, once per epoch
    return config
