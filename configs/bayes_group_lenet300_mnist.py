"""BayesNAS App. B.2.1: LeNet-300-100 on MNIST with shape-, row- and column-wise priors.

Table S4's setting: the hyper-parameters gamma / omega are updated every ten epochs for
T_max = 10 iterations (100 epochs).  The paper does not give lambda, the optimiser or
the batch size; lambda = 1e-3 is our choice (see ``bayes_group_lenet300_fmnist.py``).
MNIST comes through tfds (prepared offline with ``tfds build mnist
--file_format=array_record``) and needs ``mnist`` among ``jaxnas.data.DATASETS`` (a
tfds entry like CIFAR-10's; until then the run stops with "unknown dataset")::

    jaxnas compress --config configs/bayes_group_lenet300_mnist.py --workdir runs/bg_lenet300
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayes-group")
    config.data.dataset = "mnist"
    config.data.batch_size = 128
    config.model = "lenet300"
    config.groups.dense = "element,output,input"  # Fig. S5 (a), (b), (c)
    config.lam = 1e-3
    config.k = 10
    config.epochs = 100
    config.optim.name = "sgd"
    config.optim.lr = 0.05
    config.hessian.estimator = "ggn_mc"
    config.hessian.examples = 4096
    return config
