"""SiDT on Swin-T, ImageNet-20 (thesis Sec. 4.3.3, Table 4.5; settings of Table 4.4).

A paper config (GPU): Swin-T (:func:`jaxnas.width.swin.swin_t`, 224x224, patch 4,
window 7, embed 96, depths 2-2-6-2, heads 3-6-12-24; 27,534,734 parameters at 20
classes, 4.49 G multiply-adds), scores on every block's head dimensions and MLP units,
searched with gamma ||alpha||_1, gamma = 1e-4, pruned by a global ranking of |alpha| to
20 / 40 / 60 / 80 % (``--set prune.ratio=...``), retrained from the warm start "using
the same settings as the search stage".

Given by the thesis (L1353, for the CIFAR-100 runs; the ImageNet-20 runs "transfer"
them, L1362): batch 256, patch 4, window 7, embedding 96, initial lr 2.5e-4,
"momentum 0.9", weight decay 0.05, 160 epochs, gamma = 1e-4.  lr 2.5e-4 is Swin's
``BASE_LR`` 5e-4 linearly scaled to batch 256 (x 256 / 512, Swin's ``main.py``) and
weight decay 0.05 is Swin's, so the thesis ran Swin's recipe: AdamW (beta_1 = 0.9 is
the "momentum", beta_2 0.999, eps 1e-8; no decay on norms, biases and the relative
position tables), per-step cosine with a linear warm-up (Swin's 20 epochs, warm-up lr
5e-7 and final lr 5e-6 scaled the same way: 2.5e-7, 2.5e-6), gradient clipping 5.
Not given, chosen here: augmentation (DARTS' ImageNet transforms, not Swin's
RandAugment / mixup), drop path (Swin-T's 0.2), the score optimiser (momentum SGD with
the prox l1 step at the weights' lr), the split-data RARTS scheme (as the CNN width
search), lambda / beta (1, 1).

ImageNet-20 (thesis Sec. 4.2.2: 20 random ImageNet classes, 26k training / 1k
validation images): ``data.dataset = "imagenet20"`` streams the 20 classes drawn with
a fixed seed from a prepared ``imagenet2012`` (the thesis's classes are not
published); ``classes.json`` in the workdir lists them.  Needs ImageNet prepared for
tfds in the ``array_record`` format (``data.data_dir``).
"""

import json

from jaxnas.config import default_config


def get_config():
    config = default_config("sidt")
    config.seed = 0

    config.data.dataset = "imagenet20"
    config.data.batch_size = 256
    config.data.portion = 0.5
    config.data.flip = True

    config.model.name = "swin_t"
    config.model.num_classes = 20
    config.model.kwargs = json.dumps(dict(image_size=224, drop_path_rate=0.2))
    config.model.input_size = 224

    config.search.epochs = 160
    config.search.order = "rarts"
    config.search.w_optimizer = "adamw"
    config.search.lr = 2.5e-4
    config.search.lr_min = 2.5e-6
    config.search.schedule = "warmup_cosine"
    config.search.warmup_epochs = 20.0
    config.search.warmup_lr = 2.5e-7
    config.search.b1 = 0.9
    config.search.b2 = 0.999
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
    config.finetune.optimizer = "adamw"
    config.finetune.lr = 2.5e-4
    config.finetune.lr_min = 2.5e-6
    config.finetune.schedule = "warmup_cosine"
    config.finetune.warmup_epochs = 20.0
    config.finetune.warmup_lr = 2.5e-7
    config.finetune.b1 = 0.9
    config.finetune.b2 = 0.999
    config.finetune.weight_decay = 0.05
    config.finetune.grad_clip = 5.0
    config.finetune.kd_weight = 0.0  # the thesis mentions no distillation for SiDT (L1353)
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 50
    return config
