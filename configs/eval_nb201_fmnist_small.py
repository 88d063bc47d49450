"""Retrain an NB201 cell on Fashion-MNIST in a few minutes on a 2-core CPU.

``eval_nb201_cifar10.py`` shrunk: C=8, 2 cells per stage (28x28 -> 14x14 -> 7x7), batch
64, the first 6400 training images, 4 epochs, SGD with Nesterov momentum, lr 0.05 cosine
to 0, weight decay 5e-4; test accuracy on the first 2000 test images every epoch:

    jaxnas train --config configs/eval_nb201_fmnist_small.py \\
        --genotype runs/nb201_demo/genotype.json --workdir runs/nb201_demo/retrain
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 64
    config.data.limit = 6400
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.genotype = (
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    )
    config.model.init_channels = 8
    config.model.layers = 2  # cells per stage
    config.model.auxiliary = False
    config.model.drop_path_prob = 0.0

    config.optim.lr = 0.05
    config.optim.nesterov = True
    config.optim.weight_decay = 5e-4
    config.optim.grad_clip = 0.0

    config.train.epochs = 4
    config.run.log_every_steps = 20
    config.run.eval_limit = 2000
    return config
