"""SparseNAS search on CIFAR-10 with AdamHAPG, as in the paper (Wu et al., appendix
"Implementation details"; Table 1 row "SparseNAS + AdamHAPG").

As ``sparsenas_cifar10_hapg.py`` but A by AdamHAPG: lr 3e-4 (constant), betas
(0.5, 0.999), per-element L1 steps and per-group median group steps. The
cherry-picked space of Table 1's ``AdamHAPG*`` row (normal cell: sep_conv_3x3,
skip_connect; reduction cell: skip_connect, max_pool_3x3) is one override away:

    jaxnas search --config configs/sparsenas_cifar10_adamhapg.py --workdir runs/sparsenas_adamhapg
    jaxnas search --config configs/sparsenas_cifar10_adamhapg.py --workdir runs/sparsenas_cherry \\
        --set model.primitives=sparsenas_cherry_picked
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

    config.optim.a_lr = 3e-4
    config.optim.a_beta1 = 0.5
    config.optim.a_beta2 = 0.999

    config.search.epochs = 50
    config.search.optimizer = "adam_hapg"
    config.search.alpha = 0.5
    config.search.lam_start = 0.0
    config.search.lam_step = 0.01
    config.search.order = "second"
    config.search.hypergradient = "exact"

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
