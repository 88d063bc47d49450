"""RARTS width search on PreResNet-164, CIFAR-10 (thesis Table 4.1; a GPU config).

Thesis Sec. 4.2.1 (L1208): "the same settings as NetSlim": lr 0.1, weight decay 1e-4,
160 epochs, gamma = 1e-4 (l1 on the channel scores), fine-tuning with the same
settings, distillation at T = 4, pruning ratio (PRC) 40 % or 60 %
(``--set prune.ratio=0.6``).  From NetSlim's code where the thesis is silent: batch 64,
momentum 0.9, lr / 10 at 50 % and 75 % of the epochs (``schedule = "step"``), crop 4 +
flip.  Not given anywhere, chosen here: lambda = beta = 1 (as the RARTS cell search),
the scores' SGD (lr 0.1, momentum 0.9, no weight decay), the prox form of the l1 term,
a global ranking of |alpha| (what NetSlim's single threshold does), KD weight 1 added
to the cross entropy.  PreResNet-164: 1,703,258 parameters, 2.48e8 MACs.

Baselines from the same file: ``--method netslim`` (l1 on the BN scales, no split),
``--method random``.  ``experiments/width_tables.py table41`` runs the whole table.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts-width")
    config.seed = 0

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True

    config.model.name = "preresnet164"

    config.search.epochs = 160
    config.search.order = "rarts"
    config.search.lr = 0.1
    config.search.schedule = "step"
    config.search.momentum = 0.9
    config.search.weight_decay = 1e-4
    config.search.a_lr = 0.1
    config.search.a_momentum = 0.9
    config.search.gamma = 1e-4
    config.search.l1 = "prox"
    config.search.lam = 1.0
    config.search.beta = 1.0

    config.prune.mode = "ratio"
    config.prune.ratio = 0.4
    config.prune.scope = "global"

    config.finetune.epochs = 160
    config.finetune.lr = 0.1
    config.finetune.schedule = "step"
    config.finetune.momentum = 0.9
    config.finetune.weight_decay = 1e-4
    config.finetune.kd_weight = 1.0
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 100
    return config
