"""SiDT on a small ViT on Fashion-MNIST: a CPU demo of thesis Sec. 4.3 (minutes).

The thesis's recipe (search -> prune -> warm-start retrain, L1333-1335, L1353) on
:func:`jaxnas.width.vit.vit_tiny` (28x28x1, patch 7: 16 patches + cls, d = 64, 4 blocks
of 4 heads x 16 dimensions, MLP 128; 139,018 parameters): search the head-dimension
and MLP-unit scores with the RARTS Lagrangian plus gamma ||alpha||_1 (prox form) on
the two halves of the first 20000 training images, rank |alpha| globally, prune 40 % of
the dimensions, retrain the sliced network from its warm start (plain cross-entropy:
the thesis mentions no distillation for SiDT, L1353; ``--set finetune.kd_weight=1``
distils from the unpruned network at T = 4 as the CNN width search does).

gamma is much larger than the thesis's 1e-4 (160 epochs on CIFAR-100 there, a few
hundred steps here).  Other ratios: ``--set prune.ratio=0.2`` etc.
"""

import json

from jaxnas.config import default_config


def get_config():
    config = default_config("sidt")
    config.seed = 0

    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 64
    config.data.portion = 0.5
    config.data.limit = 20000
    config.data.crop_padding = 2

    config.model.name = "vit_tiny"
    config.model.kwargs = json.dumps(
        dict(image_size=28, patch_size=7, dim=64, depth=4, heads=4, mlp_dim=128, pool="cls")
    )

    config.search.epochs = 5
    config.search.order = "rarts"
    config.search.lr = 0.05
    config.search.schedule = "cosine"
    config.search.momentum = 0.9
    config.search.weight_decay = 1e-4
    config.search.grad_clip = 5.0
    config.search.a_lr = 0.05
    config.search.gamma = 0.02
    config.search.l1 = "prox"

    config.prune.mode = "ratio"
    config.prune.ratio = 0.4
    config.prune.scope = "global"

    config.finetune.epochs = 3
    config.finetune.lr = 0.02
    config.finetune.schedule = "cosine"
    config.finetune.weight_decay = 1e-4
    config.finetune.grad_clip = 5.0
    config.finetune.kd_weight = 0.0
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 10
    config.run.eval_limit = 2000
    config.run.tensorboard = False
    return config
