"""RARTS width search on Fashion-MNIST with a small PreActResNet: a CPU demo (minutes).

Thesis Algorithm 3 end to end on a 2-core CPU: search the channel scores with the RARTS
Lagrangian plus gamma ||alpha||_1 (prox form, exact zeros) on the two halves of the
first 4000 training images, prune 40 % of the channels (global ranking of |alpha|),
fine-tune the sliced network with distillation (T = 4) from the unpruned one.

gamma is much larger than the thesis's 1e-4: the thesis searches for 160 epochs on
CIFAR, the demo for a few hundred steps, and a soft threshold of eta * gamma per step
has to move the scores that far in that many steps.  The baselines run from the same
file: ``jaxnas compress --config configs/width_fmnist_tiny.py --method netslim --set
search.gamma=0.01`` (l1 subgradient on the BN scales, no split; before momentum 0.9 a
subgradient moves 10x farther per step than the prox, so gamma / 10) or
``--method random``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts-width")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.limit = 4000
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.name = "preactresnet"
    config.model.stages = (8, 16, 32)
    config.model.blocks = (1, 1, 1)
    config.model.strides = (1, 2, 2)
    config.model.stem = 8

    config.search.epochs = 4
    config.search.order = "rarts"
    config.search.lr = 0.05
    config.search.schedule = "cosine"
    config.search.a_lr = 0.05
    config.search.gamma = 0.1
    config.search.l1 = "prox"

    config.prune.mode = "ratio"
    config.prune.ratio = 0.4
    config.prune.scope = "global"

    config.finetune.epochs = 2
    config.finetune.lr = 0.02
    config.finetune.schedule = "cosine"
    config.finetune.kd_weight = 1.0
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 10
    config.run.eval_limit = 1000
    return config
