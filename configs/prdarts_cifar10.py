"""PR-DARTS search on CIFAR-10 as in the paper (Zhou et al., NeurIPS 2020, Sec. 5, L184-L188).

8 cells (reductions at cells 2 and 5), 16 initial channels, batch 128, 200 epochs on half
of the training set (the other half trains beta), tau 10 -> 0.1 linearly per epoch,
a = -0.1, b = 1.1, lambda = (0.01, 0.005, 0.005), two ops per edge per iteration.  What
the paper's missing appendix leaves open is the authors' code's (``default_config``
of ``jaxnas.search.prdarts``): momentum SGD 0.025 -> 0.001 cosine, Nesterov, weight
decay 5e-4, clip 5; Adam 3e-4, betas (0.5, 0.999), L2 1e-3; random crop 4 + flip,
no cutout.  A GPU run:

    jaxnas search --config configs/prdarts_cifar10.py --workdir runs/prdarts_c10

The authors' code differs in places (6 cells, batch 250, tau 1 -> 0.1, top-2
straight-through gates, a masked and hinged regularizer); for its form:

    --set search.gates=code --set search.reg_variant=code --set search.tau_max=1.0
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("prdarts")
    config.seed = 1  # the authors' code's seed

    config.data.dataset = "cifar10"
    config.data.batch_size = 128
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0  # the authors' search does not use cutout

    config.model.init_channels = 16
    config.model.layers = 8

    config.search.epochs = 200
    config.search.tau_max = 10.0
    config.search.tau_min = 0.1
    config.search.gates = "paper"
    config.search.reg_variant = "paper"
    config.search.derive = "paper"

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0  # the whole 10k test split, once per epoch
    return config
