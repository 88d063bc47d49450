"""ASM-NAS retraining on CIFAR-10 (Hao & Zhu, 2021, Sec. 5.2, Table 1).

The 15 cells found by selection (``python -m jaxnas.asmnas_select``), each
its own architecture, stacked end to end with reductions at the 5th and 10th cells
(0-based 4 and 9: the positions the genotype records, since it was searched there),
trained from scratch: batch 64, 600 epochs, SGD lr 0.025 (cosine to 0, the DARTS
schedule; the paper names none), momentum 0.9, weight decay 3e-4, drop path 0.2
(ramped linearly), auxiliary head weight 0.4, random crop + flip, cutout 16 (the
tables say "+ cutout"; the text does not), gradient clipping 5 (DARTS). The paper
reports 2.59 % test error at 3.1M parameters (2.49 % with an undefined "large
setting" of 4.0M). After the search and the selection:

    jaxnas search --config configs/asmnas_cifar10.py --workdir runs/asmnas_cifar10
    python -m jaxnas.asmnas_select --workdir runs/asmnas_cifar10
    jaxnas summary --config configs/eval_asmnas_cifar10.py      # parameters, before training
    jaxnas train --config configs/eval_asmnas_cifar10.py --workdir runs/asmnas_cifar10_eval

Initial channels: not in the paper, and the parameter count depends on the genotype
as much as on C (every edge keeps its op unless ``none`` wins, Alg. 1 line 10). C=34
gives 3,084,490 parameters (the paper's 3.1M) for a dense hand-made 15-cell genotype
that keeps all 14 edges of every cell with the op mix of the paper's Fig. 4
(sep_conv_3x3 in the first cells, 5x5 convs in the middle, pooling at the end).
Sparser cells are smaller at C=34: 10 of 14 edges 2.54M, DARTS_V2's cells at (4, 9)
2.38M, the pool-heavy cells of a 3-epoch 15-cell tiny search 1.57M. Check the
genotype at hand with ``jaxnas summary`` and set ``--set model.init_channels=...``.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 16

    config.model.genotype = "runs/asmnas_cifar10/selection/genotype.json"
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
