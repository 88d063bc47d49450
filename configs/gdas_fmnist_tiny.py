"""A real GDAS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

The algorithm of ``gdas_nb201_cifar10.py`` (the authors' setting: tau 10 -> 0.1 linearly
per epoch, one sampled op per edge) on the DARTS cell, shrunk like
``darts_fmnist_tiny.py``: 5 cells (reductions at cells 1 and 3: 28x28 -> 14x14 -> 7x7), 4
initial channels, batch 32, the first 1600 training images (800 train the weights, 800
train alpha), 5 epochs.  Only the sampled op of each edge is computed, so a step costs
a fraction of a first-order DARTS step.

    jaxnas search --config configs/gdas_fmnist_tiny.py --workdir runs/gdas_demo
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("gdas")
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
    config.search.tau_max = 10.0
    config.search.tau_min = 0.1

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
