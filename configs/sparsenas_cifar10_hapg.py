"""SparseNAS search on CIFAR-10 with HAPG, as in the paper (Wu et al., Sec. "Experiments"
and appendix "Implementation details"; Table 1 row "SparseNAS + HAPG").

8 cells (reductions at cells 2 and 5), 16 initial channels, batch 64, 50 epochs on
half of the training set (the other half trains A); the 7 DARTS ops without ``none``
mixed linearly (Eq. 1); w by SGD (momentum 0.9, wd 3e-4, lr 0.025 cosine); A by HAPG
(Eqs. 6-8) with lr 0.025 cosine, alpha 0.5, lambda increased by 0.01 per epoch, on the
second-order hypergradient (Eq. 12, exact; ``--set search.hypergradient=finite_difference``
for the DARTS finite difference of Eq. 13). A GPU run:

    jaxnas search --config configs/sparsenas_cifar10_hapg.py --workdir runs/sparsenas_hapg
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("sparsenas")
    config.seed = 2

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.init_channels = 16
    config.model.layers = 8
    config.model.primitives = "darts_no_zero"

    config.optim.hapg_lr = 0.025  # cosine per epoch to hapg_lr_min
    config.optim.hapg_lr_min = 0.001

    config.search.epochs = 50
    config.search.optimizer = "hapg"
    config.search.alpha = 0.5
    config.search.lam_start = 0.0
    config.search.lam_step = 0.01
    config.search.order = "second"
    config.search.hypergradient = "exact"

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
