"""ASM-NAS search on CIFAR-10 as in the paper (Hao & Zhu, 2021, Sec. 5.1).

A 15-cell supernet (reductions at the 5th and 10th cells, 0-based 4 and 9), 16
initial channels doubling to 32 and 64, an attention module on every edge of every
cell (Eq. 4.2-4.5), 30 epochs of single-level momentum SGD (lr 0.025 cosine-annealed
to 0, momentum 0.9, weight decay 3e-4) on half of the training set; the other half
is only used for selection (Algorithm 1, lines 6-13). A GPU run, then selection on
the whole held-out half:

    jaxnas search --config configs/asmnas_cifar10.py --workdir runs/asmnas_cifar10
    python -m jaxnas.asmnas_select --workdir runs/asmnas_cifar10

Not given by the paper (our choices, see the README's deviations table): batch 64,
50/50 split, crop 4 + flip during search, gradient clipping 5, attention widths 16.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("asmnas")
    config.seed = 2

    config.data.dataset = "cifar10"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.init_channels = 16
    config.model.layers = 15
    config.model.reductions = (4, 9)  # "the 5th, 10th are reduction cells" (Sec. 5.2)

    config.search.epochs = 30
    config.search.selection = "cell_by_cell"  # Algorithm 1, lines 7-12

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
