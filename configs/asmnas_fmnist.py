"""ASM-NAS search on Fashion-MNIST as in the paper (Hao & Zhu, 2021, Sec. 5.1, Table 3).

The CIFAR recipe (``asmnas_cifar10.py``) on 28x28x1 images (28 -> 14 -> 7 at the
reduction cells 4 and 9); the paper reports 3.70 % test error with 2.6M parameters
for the retrained 15-cell network. GPU run, then selection on the held-out half:

    jaxnas search --config configs/asmnas_fmnist.py --workdir runs/asmnas_fmnist
    python -m jaxnas.asmnas_select --workdir runs/asmnas_fmnist

Crop 2 + flip during search (the paper gives no search augmentation).
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("asmnas")
    config.seed = 2

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.crop_padding = 2
    config.data.flip = True

    config.model.init_channels = 16
    config.model.layers = 15
    config.model.reductions = (4, 9)

    config.search.epochs = 30
    config.search.selection = "cell_by_cell"

    config.run.log_every_steps = 50
    config.run.eval_test = True
    config.run.eval_limit = 0
    return config
