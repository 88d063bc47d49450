"""A real RARTS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

The same algorithm as ``rarts_cifar10.py`` shrunk like ``darts_fmnist_tiny.py``: 5 cells
(28x28 -> 14x14 -> 7x7), 4 initial channels, batch 32, the first 1600 training images
(800 are D_a and train the auxiliary copy w, 800 are D_p and train the primary copy u),
5 epochs.  A RARTS step costs about two first-order DARTS steps.  No latency penalty
by default; to add one, measure a table for this config first:

    jaxnas search --config configs/rarts_fmnist_tiny.py --workdir runs/rarts_demo
    jaxnas latency --config configs/rarts_fmnist_tiny.py --out runs/lat_fmnist_tiny.json
    jaxnas search --config configs/rarts_fmnist_tiny.py --workdir runs/rarts_lat \
        --set search.latency_table=runs/lat_fmnist_tiny.json
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts")
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
    config.search.lam = 1.0
    config.search.beta = 1.0
    config.search.latency_table = ""  # off; see the docstring

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
