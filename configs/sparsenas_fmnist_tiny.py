"""A real SparseNAS search on Fashion-MNIST that finishes in minutes on a 2-core CPU.

Same algorithm as ``sparsenas_cifar10_adamhapg.py`` but first order and shrunk like
``darts_fmnist_tiny.py``: 5 cells (reductions at cells 1 and 3), 4 initial channels,
batch 32, the first 1600 training images (800 train w, 800 train A), 5 epochs. With
only 5 epochs the pathwise lambda grows by LAM_STEP per epoch (the paper: 0.01 over
50 epochs) so that the prox produces exact zeros within the demo:

    jaxnas search --config configs/sparsenas_fmnist_tiny.py --workdir runs/sparsenas_demo
"""

from jaxnas.config import default_config

LAM_STEP = 0.1


def get_config():
    config = default_config("sparsenas")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 32
    config.data.portion = 0.5
    config.data.limit = 1600
    config.data.pad_to = 0
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.init_channels = 4
    config.model.layers = 5

    config.search.epochs = 5
    config.search.order = "first"
    config.search.optimizer = "adam_hapg"
    config.search.lam_step = LAM_STEP

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
