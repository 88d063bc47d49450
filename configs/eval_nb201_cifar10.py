"""Retrain an NB201 cell on CIFAR-10 the way NAS-Bench-201 trained every cell.

NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 2.3 / Table 2; AutoDL-Projects
``configs/nas-benchmark/hyper-opts/200E.config`` and ``lib/procedures/funcs_nasbench.py``):
the network of ``jaxnas.models.nb201_net`` with C=16, N=5 cells per stage; 200 epochs,
batch 256, SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed to 0, weight decay
5e-4, no gradient clipping, no auxiliary head, no drop path; random crop 4 + flip.  It
is what ``search.nats_bench`` reads from the benchmark, for when the benchmark file is
not at hand:

    jaxnas train --config configs/eval_nb201_cifar10.py --genotype runs/darts_nb201/genotype.json \
        --workdir runs/darts_nb201/retrain
    jaxnas train --config configs/eval_nb201_cifar10.py --workdir runs/nb201_resnet \
        --genotype '|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|'

Our learning rate is set per epoch (NAS-Bench-201 updates it every step); the benchmark
trains ``cifar10`` on all 50k training images and reports the test split, as here.
The default cell is NAS-Bench-201's ResNet cell (``ResNet_CODE`` in
``lib/models/cell_searchs/genotypes.py``).
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("train")
    config.seed = 0
    config.data.dataset = "cifar10"
    config.data.batch_size = 256
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.cutout = 0

    config.model.genotype = (
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    )
    config.model.init_channels = 16
    config.model.layers = 5  # N: cells per stage
    config.model.auxiliary = False
    config.model.drop_path_prob = 0.0

    config.optim.lr = 0.1
    config.optim.schedule = "cosine"
    config.optim.lr_min = 0.0
    config.optim.momentum = 0.9
    config.optim.nesterov = True
    config.optim.weight_decay = 5e-4
    config.optim.grad_clip = 0.0
    config.optim.label_smoothing = 0.0

    config.train.epochs = 200
    config.run.log_every_steps = 50
    return config
