"""BayesNAS App. B.2.1: LeNet-5-Caffe (20-50-800-500) on MNIST.

Shape- and filter-wise priors on the convs (Fig. S5 a, j), row- and column-wise on the
dense layers (Fig. S5 b, c); Table S5's network.  The paper gives no schedule for
LeNet-5: we reuse LeNet-300-100's (update every 10 epochs, T_max = 10).  MNIST
through tfds (see ``bayes_group_lenet300_mnist.py``)::

    jaxnas compress --config configs/bayes_group_lenet5_mnist.py --workdir runs/bg_lenet5
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayes-group")
    config.data.dataset = "mnist"
    config.data.batch_size = 128
    config.model = "lenet5"
    config.groups.conv = "shape,filter"
    config.groups.dense = "output,input"
    config.lam = 1e-3
    config.k = 10
    config.epochs = 100
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.hessian.estimator = "ggn_mc"
    config.hessian.examples = 4096
    return config
