"""A real PR-DARTS search on Fashion-MNIST that finishes in a few minutes on a 2-core CPU.

The algorithm of ``prdarts_cifar10.py`` shrunk like ``darts_fmnist_tiny.py``: 5 cells
(28x28 -> 14x14 -> 7x7), 4 initial channels, batch 32, the first 1600 training images
(800 train the weights, 800 train beta), 5 epochs.  Two ops per edge are computed per
step, so a step costs well under a first-order DARTS step.  tau starts at 1 (the authors'
code's default) instead of the paper's 10: at tau = 10 the regularizers have no gradient
(P(g != 0) = sigmoid(beta + 24)), and over 5 epochs the paper's schedule would leave them
only the last one.

    jaxnas search --config configs/prdarts_fmnist_tiny.py --workdir runs/prdarts_demo
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("prdarts")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 32
    config.data.portion = 0.5
    config.data.limit = 1600  # first 1600 images of each split (train and test)
    config.data.pad_to = 0  # 28x28 as is
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.init_channels = 4
    config.model.layers = 5  # reductions at layers // 3 = 1 and 2 * layers // 3 = 3

    config.search.epochs = 5
    config.search.tau_max = 1.0
    config.search.tau_min = 0.1

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
