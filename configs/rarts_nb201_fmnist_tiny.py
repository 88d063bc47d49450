"""A real RARTS search on the NAS-Bench-201 cell, on Fashion-MNIST, in minutes on a 2-core CPU.

``darts_nb201_fmnist_tiny.py`` with RARTS (``rarts_nb201_cifar10.py`` shrunk): 2 cells
per stage, 4 initial channels, batch 32, the first 1600 training images (800 are D_a,
800 are D_p), 4 epochs; lam = beta = 1, weight decay 5e-4 on both copies, no latency
penalty.  A RARTS step costs about two first-order DARTS steps:

    jaxnas search --config configs/rarts_nb201_fmnist_tiny.py --workdir runs/rarts_nb201_demo
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 32
    config.data.portion = 0.5
    config.data.limit = 1600  # first 1600 images of each split (train and test)
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.space = "nb201"
    config.model.primitives = "nb201"
    config.model.init_channels = 4
    config.model.layers = 2  # cells per stage (NAS-Bench-201: 5)

    config.optim.u_weight_decay = 5e-4
    config.optim.w_weight_decay = 5e-4

    config.search.epochs = 4
    config.search.lam = 1.0
    config.search.beta = 1.0
    config.search.latency_table = ""

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
