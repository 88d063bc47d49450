"""A real DARTS search on the NAS-Bench-201 cell, on Fashion-MNIST, in minutes on a 2-core CPU.

The setting of ``darts_nb201_cifar10.py`` shrunk: 2 cells per stage (8 layers with the
two ResNet blocks: 28x28 -> 14x14 -> 7x7), 4 initial channels, batch 32, the first 1600
training images (800 train the weights, 800 the architecture), 4 epochs.  Fashion-MNIST
is not in NATS-Bench, so the found cell is retrained here (``eval_nb201_fmnist_small.py``);
its CIFAR records are one ``python -m jaxnas.spaces.nb201 lookup`` away:

    jaxnas search --config configs/darts_nb201_fmnist_tiny.py --workdir runs/nb201_demo
    jaxnas train --config configs/eval_nb201_fmnist_small.py \
        --genotype runs/nb201_demo/genotype.json --workdir runs/nb201_demo/retrain

``rarts_nb201_fmnist_tiny.py`` is the same search by RARTS.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("darts")
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

    config.optim.w_weight_decay = 5e-4  # NAS-Bench-201's DARTS setting
    config.optim.w_nesterov = True

    config.search.epochs = 4
    config.search.order = "first"

    config.run.log_every_steps = 10
    config.run.eval_test = True
    config.run.eval_limit = 512
    return config
