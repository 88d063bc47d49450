"""Width search ablation on MobileNetV2, ImageNet-20 (thesis Table 4.2; a GPU config).

Thesis Sec. 4.2.2 (L1210): MobileNetV2 on ImageNet-20 (20 random ImageNet classes, 26k
training / 1k validation images), a strong l1 penalty and **no fixed pruning ratio**:
the channels whose score is exactly zero go (``prune.mode = "nonzero"``, exact zeros
from the prox form).  Rows: ``search.order`` = rarts | darts1 | darts2 (DARTS-2's
forward-over-reverse hypergradient runs the depthwise convs without their custom VJP:
``model.depthwise = "auto"``), and ``--method random`` at RARTS' learned ratio
(``experiments/width_tables.py table42``).

The thesis gives nothing else for this experiment (lr, epochs, gamma, input size).
Chosen here: torchvision's MobileNetV2 recipe scaled to the small set -- SGD lr 0.05,
momentum 0.9, weight decay 4e-5, cosine, batch 128, 60 search and 60 fine-tuning
epochs -- and gamma = 1e-3 (ten times the CIFAR value: "a strong l1 penalty").

ImageNet-20: ``data.dataset = "imagenet20"``, the 20 classes drawn with a fixed seed
from a prepared ``imagenet2012`` (the thesis's classes are not published; the workdir's
``classes.json`` lists ours), all their training and validation images, streamed with
DARTS' ImageNet transforms at 224x224 (``model.input_size``).
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("rarts-width")
    config.seed = 0

    config.data.dataset = "imagenet20"
    config.data.batch_size = 128
    config.data.portion = 0.5
    config.data.flip = True

    config.model.name = "mobilenetv2"
    config.model.num_classes = 20
    config.model.width_mult = 1.0
    config.model.depthwise = "auto"
    config.model.input_size = 224

    config.search.epochs = 60
    config.search.order = "rarts"
    config.search.lr = 0.05
    config.search.schedule = "cosine"
    config.search.momentum = 0.9
    config.search.weight_decay = 4e-5
    config.search.a_lr = 0.05
    config.search.gamma = 1e-3
    config.search.l1 = "prox"

    config.prune.mode = "nonzero"
    config.prune.scope = "global"

    config.finetune.epochs = 60
    config.finetune.lr = 0.05
    config.finetune.schedule = "cosine"
    config.finetune.momentum = 0.9
    config.finetune.weight_decay = 4e-5
    config.finetune.kd_weight = 1.0
    config.finetune.temperature = 4.0

    config.run.log_every_steps = 50
    return config
