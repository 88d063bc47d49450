"""A real retraining on Fashion-MNIST that takes a few minutes on a 2-core CPU.

The DARTS CIFAR network shrunk: 5 cells (reductions after cells 1 and 3:
28x28 -> 14x14 -> 7x7), C=8, auxiliary head on the 7x7 output of cell 3, batch
64, the first 6400 training images, 4 epochs, cosine lr from 0.05, drop path 0.1,
crop 2 + flip. Test accuracy on the first 2000 test images every epoch:

    jaxnas train --config configs/eval_fmnist_small.py --genotype runs/demo/genotype.json \
        --workdir runs/demo_train
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

    config.model.genotype = "DARTS_V2"
    config.model.init_channels = 8
    config.model.layers = 5
    config.model.drop_path_prob = 0.1

    config.optim.lr = 0.05
    config.optim.weight_decay = 3e-4

    config.train.epochs = 4
    config.run.log_every_steps = 20
    config.run.eval_limit = 2000
    return config
