"""BayesNAS App. B.2.2: ResNet-18 on CIFAR-10 (a GPU config).

Shape- and filter-wise priors on every conv (Fig. S5 a, j), row- and column-wise on
the classifier (Fig. S5 b, c).  Filters of a block's first conv are removed physically;
the other zeros are sparsity (Table S6 reports per-layer sparsity).  The paper gives
neither lambda nor the schedule: SGD 0.1 cosine, weight decay 5e-4, 200 epochs, an
update every 20 epochs, the Monte-Carlo GGN diagonal.  CIFAR-10 through tfds::

    jaxnas compress --config configs/bayes_group_resnet18_cifar10.py --workdir runs/bg_r18
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayes-group")
    config.data.dataset = "cifar10"
    config.data.batch_size = 128
    config.data.crop_padding = 4
    config.data.flip = True
    config.model = "resnet18"
    config.groups.conv = "shape,filter"
    config.groups.dense = "output,input"
    config.lam = 1e-4
    config.k = 20
    config.epochs = 200
    config.optim.name = "sgd"
    config.optim.lr = 0.1
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.hessian.estimator = "ggn_mc"
    config.hessian.examples = 2048
    config.hessian.samples = 4
    return config
