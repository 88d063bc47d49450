"""ASM-NAS retraining on CIFAR-100 (Hao & Zhu, 2021, Sec. 5.2, Table 2).

The CIFAR-10 recipe (``eval_asmnas_cifar10.py``) on CIFAR-100 with the cells selected
by the CIFAR-100 search (the paper searches on each dataset): 15 cells with
reductions at the 5th and 10th (0-based 4, 9), batch 64, 600 epochs, SGD lr 0.025
cosine to 0, momentum 0.9, weight decay 3e-4, drop path 0.2, auxiliary weight 0.4,
crop + flip + cutout 16, clipping 5. The paper reports 15.60 % test error at 3.1M
parameters:

    jaxnas search --config configs/asmnas_cifar100.py --workdir runs/asmnas_cifar100
    python -m jaxnas.asmnas_select --workdir runs/asmnas_cifar100
    jaxnas summary --config configs/eval_asmnas_cifar100.py
    jaxnas train --config configs/eval_asmnas_cifar100.py --workdir runs/asmnas_cifar100_eval

Initial channels: not in the paper; C=34 as for CIFAR-10 (``eval_asmnas_cifar10.py``
says why); the 100-class classifier adds 16 * 34 * 90 + 90 = 49,050 parameters: 3,133,540
for the dense Fig. 4-style genotype (the paper's 3.1M), 2.59M with 10 of 14 edges per
cell, 2.43M for DARTS_V2's cells at (4, 9). Check with ``jaxnas summary`` and set
``model.init_channels`` for the genotype at hand.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "cifar100"
    config.data.batch_size = 64
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 16

    config.model.genotype = "runs/asmnas_cifar100/selection/genotype.json"
    config.model.init_channels = 34
    config.model.layers = 15
    config.model.reductions = (4, 9)
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
