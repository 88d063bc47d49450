"""BayesNAS structured compression of LeNet-5-Caffe on Fashion-MNIST, minutes on a CPU.

Table S5's recipe (shape- and filter-wise priors on the convs, row- and column-wise
on the dense layers) on the first 10,000 local Fashion-MNIST training images: 6
epochs with an update every 2 (T_max = 3), then 1 epoch of fine-tuning the pruned
network without the penalty, SGD 0.05 cosine over the 7 epochs, batch 128::

    jaxnas compress --config configs/bayes_group_lenet5_fmnist.py --workdir runs/bg5
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayes-group")
    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 128
    config.data.limit = 10000
    config.model = "lenet5"
    config.groups.conv = "shape,filter"
    config.groups.dense = "output,input"
    config.lam = 1e-3
    config.k = 2
    config.epochs = 6
    config.finetune_epochs = 1
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.hessian.estimator = "ggn_mc"
    config.hessian.examples = 1024
    config.hessian.samples = 16
    return config
