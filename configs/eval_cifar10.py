"""DARTS' CIFAR-10 evaluation (Liu et al., 2019, Sec. 3.3; the reference ``train.py``).

20 cells, C=36, batch 96, 600 epochs, SGD lr 0.025 with cosine annealing to 0,
momentum 0.9, weight decay 3e-4, gradient clipping 5, cutout 16, drop path 0.2
(ramped linearly), auxiliary head weight 0.4. The paper reports 2.76 +- 0.09 %
test error for DARTS_V2 (3.3M parameters). A GPU run:

    jaxnas train --config configs/eval_cifar10.py --genotype DARTS_V2 --workdir runs/c10_v2
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "cifar10"
    config.data.batch_size = 96
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 16

    config.model.genotype = "DARTS_V2"
    config.model.init_channels = 36
    config.model.layers = 20
    config.model.auxiliary = True
    config.model.auxiliary_weight = 0.4
    config.model.drop_path_prob = 0.2

    config.optim.lr = 0.025
    config.optim.schedule = "cosine"
    config.optim.lr_min = 0.0
    config.optim.momentum = 0.9
    config.optim.weight_decay = 3e-4
    config.optim.grad_clip = 5.0

    config.train.epochs = 600
    config.run.log_every_steps = 50
    return config
