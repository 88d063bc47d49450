"""GDAS search on CIFAR-10 in the DARTS space (Dong & Yang, CVPR 2019, Sec. 4.1).

8 cells (reductions at cells 2 and 5), 16 initial channels, 240 epochs on half of the
training set (the other half trains alpha), momentum SGD with a cosine learning rate
0.025 -> 0.001 and weight decay 3e-4, Adam 3e-4 for alpha, tau 10 -> 0.1 linearly per
epoch, one sampled op per edge; data as DARTS' search (batch 64, random crop 4 +
horizontal flip; docs/methods/gdas.md lists what was chosen).  A GPU run:

    jaxnas search --config configs/gdas_cifar10.py --workdir runs/gdas_cifar10
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("gdas")
    config.seed = 0

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.init_channels = 16
    config.model.layers = 8

    config.search.epochs = 240
    config.search.tau_max = 10.0
    config.search.tau_min = 0.1

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
