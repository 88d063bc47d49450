"""DARTS' ImageNet evaluation, mobile setting (Liu et al., 2019, Sec. 3.4;
the reference ``train_imagenet.py``).

14 cells, C=48, the two-stem network, batch 128, 250 epochs, SGD lr 0.1 decayed
by 0.97 per epoch, momentum 0.9, weight decay 3e-5, gradient clipping 5, label
smoothing 0.1, auxiliary head weight 0.4, no drop path. The paper reports 26.7 /
8.7 % top-1 / top-5 error for DARTS_V2 (4.7M parameters, 574M multiply-adds).
Needs ImageNet prepared for tensorflow_datasets (``imagenet2012``); see the
README on data. A multi-GPU / multi-host run:

    jaxnas train --config configs/eval_imagenet.py --genotype DARTS_V2 --workdir runs/in_v2
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "imagenet2012"
    config.data.batch_size = 128
    config.data.flip = True

    config.model.genotype = "DARTS_V2"
    config.model.init_channels = 48
    config.model.layers = 14
    config.model.auxiliary = True
    config.model.auxiliary_weight = 0.4
    config.model.drop_path_prob = 0.0

    config.optim.lr = 0.1
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.97
    config.optim.momentum = 0.9
    config.optim.weight_decay = 3e-5
    config.optim.grad_clip = 5.0
    config.optim.label_smoothing = 0.1

    config.train.epochs = 250
    config.run.log_every_steps = 100
    return config
