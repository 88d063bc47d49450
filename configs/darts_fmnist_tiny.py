"""A real DARTS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

Same algorithm as ``darts_cifar10.py`` (first order), shrunk: 5 cells (reductions
at cells 1 and 3: 28x28 -> 14x14 -> 7x7), 4 initial channels, batch 32, the first
1600 training images (800 train the weights, 800 the architecture), 5 epochs.
The data are Debian's ``dataset-fashion-mnist`` IDX files (no network needed):

    jaxnas search --config configs/darts_fmnist_tiny.py --workdir runs/demo
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("darts")
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
    config.search.order = "first"

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
