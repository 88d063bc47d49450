"""SiDT on Swin-T, CIFAR-100 at 224x224 (thesis Sec. 4.3.3, Table 4.4; a GPU config).

Thesis L1353: Swin-T (patch 4, window 7, embedding 96; depths 2-2-6-2, heads
3-6-12-24; 27,596,254 parameters at 100 classes, 4.49 G multiply-adds: the 224x224
count), searched with gamma ||alpha||_1 (gamma = 1e-4) at batch 256, lr 2.5e-4,
"momentum 0.9", weight decay 0.05, 160 epochs; pruned by a global ranking of |alpha|
to 20 / 40 / 60 / 80 % (``--set prune.ratio=...``); retrained from the warm start with
the same settings.  The input size is not stated; 4.49 G multiply-adds is Swin-T's
224x224 figure, so the 32x32 images are resized bilinearly to 224x224 on the device
(``model.input_size = 224``, :mod:`jaxnas.width.data`), after the host's crop and flip.

Optimiser: lr 2.5e-4 is Swin's ``BASE_LR`` 5e-4 scaled to batch 256 (x 256 / 512) and
weight decay 0.05 is Swin's, so Swin's recipe: AdamW (beta_1 = 0.9 the "momentum",
beta_2 0.999, eps 1e-8, no decay on norms, biases, relative position tables), per-step
cosine to 2.5e-6 after a 20-epoch linear warm-up from 2.5e-7, gradient clipping 5.

Not given, chosen here: initialisation (random: no ImageNet-pretrained weights are
loaded, which the thesis's "recovered baseline" of 81.78 % may have used), augmentation
(CIFAR's crop 4 + flip at 32x32, before the resize), drop path (0.2), the score
optimiser (momentum SGD, prox l1 step, at the weights' lr), the RARTS split, lambda /
beta (1, 1), no distillation.

    jaxnas compress --config configs/sidt_swin_t_cifar100.py --workdir runs/swin_c100_20
    python experiments/width_tables.py table44 --config configs/sidt_swin_t_cifar100.py \\
        --out runs/table44_swin
"""

import json

from jaxnas.config import default_config


def get_config():
    config = default_config("sidt")
    config.seed = 0

    config.data.dataset = "cifar100"
    config.data.batch_size = 256
    config.data.portion = 0.5
    config.data.crop_padding = 4
    config.data.flip = True

    config.model.name = "swin_t"
    config.model.num_classes = 0  # the dataset's 100
    config.model.kwargs = json.dumps(dict(image_size=224, drop_path_rate=0.2))
    config.model.input_size = 224

    for section in (config.search, config.finetune):
        section.epochs = 160
        section.lr = 2.5e-4
        section.lr_min = 2.5e-6
        section.schedule = "warmup_cosine"
        section.warmup_epochs = 20.0
        section.warmup_lr = 2.5e-7
        section.b1 = 0.9
        section.b2 = 0.999
        section.eps = 1e-8
        section.weight_decay = 0.05
        section.grad_clip = 5.0
    config.search.w_optimizer = "adamw"
    config.finetune.optimizer = "adamw"

    config.search.order = "rarts"
    config.search.a_lr = 2.5e-4
    config.search.a_momentum = 0.9
    config.search.gamma = 1e-4
    config.search.l1 = "prox"

    config.prune.mode = "ratio"
    config.prune.ratio = 0.2
    config.prune.scope = "global"

    config.finetune.kd_weight = 0.0  # the thesis mentions no distillation for SiDT (L1353)
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 50
    return config
