"""SiDT on Swin-T, ImageNet-20 (thesis Sec. 4.3.3, Table 4.5; settings of Table 4.4).

A paper config (GPU): Swin-T (:func:`jaxnas.width.swin.swin_t`, 224x224, patch 4,
window 7, embed 96, depths 2-2-6-2, heads 3-6-12-24; 27,534,734 parameters at 20
classes, 4.49 G multiply-adds), scores on every block's head dimensions and MLP units,
searched with gamma ||alpha||_1, gamma = 1e-4, pruned by a global ranking of |alpha| to
20 / 40 / 60 / 80 % (``--set prune.ratio=...``), retrained from the warm start "using
the same settings as the search stage".

Given by the thesis (L1353, for the CIFAR-100 runs; the ImageNet-20 runs "transfer"
them, L1362): batch 256, patch 4, window 7, embedding 96, initial lr 2.5e-4,
"momentum 0.9", weight decay 0.05, 160 epochs, gamma = 1e-4.  Not given: the optimizer
(lr 2.5e-4 with weight decay 0.05 is Swin's AdamW recipe, beta_1 = 0.9; the width loop
here has momentum SGD only, so these numbers are used as momentum SGD, as written),
warm-up and schedule (cosine here), augmentation, drop path (Swin-T's 0.2 here),
whether the split-data RARTS scheme or joint training was used (RARTS here, as the
CNN width search), lambda / beta (1, 1).

ImageNet-20 (thesis Sec. 4.2.2: 20 ImageNet classes, 26k training / 1k validation
images) is not a dataset of :mod:`jaxnas.data`, and ``jaxnas compress`` reads in-memory
datasets only: this config records the setup; it does not run yet.
"""

import json

from jaxnas.config import default_config


def get_config():
    config = default_config("sidt")
    config.seed = 0

    config.data.dataset = "imagenet2012"  # the ImageNet-20 subset: not available yet
    config.data.batch_size = 256
    config.data.portion = 0.5
    config.data.flip = True

    config.model.name = "swin_t"
    config.model.num_classes = 20
    config.model.kwargs = json.dumps(dict(image_size=224, drop_path_rate=0.2))

    config.search.epochs = 160
    config.search.order = "rarts"
    config.search.lr = 2.5e-4
    config.search.schedule = "cosine"
    config.search.momentum = 0.9
    config.search.weight_decay = 0.05
    config.search.grad_clip = 5.0
    config.search.a_lr = 2.5e-4
    config.search.a_momentum = 0.9
    config.search.gamma = 1e-4
    config.search.l1 = "prox"

    config.prune.mode = "ratio"
    config.prune.ratio = 0.2
    config.prune.scope = "global"

    config.finetune.epochs = 160
    config.finetune.lr = 2.5e-4
    config.finetune.schedule = "cosine"
    config.finetune.momentum = 0.9
    config.finetune.weight_decay = 0.05
    config.finetune.grad_clip = 5.0
    config.finetune.kd_weight = 0.0  # the thesis mentions no distillation for SiDT (L1353)
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 50
    return config
