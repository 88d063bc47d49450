"""BayesNAS structured compression of LeNet-300-100 on Fashion-MNIST, minutes on a CPU.

Table S4's recipe (shape-, row- and column-wise priors, Fig. S5 a-c) on the local
Fashion-MNIST files: 6 epochs with a gamma / omega update every 2 (T_max = 3), then 1
epoch of fine-tuning the pruned network without the penalty; SGD 0.05 cosine over the
7 epochs, batch 128, the Monte-Carlo GGN diagonal over 1,024 training images::

    jaxnas compress --config configs/bayes_group_lenet300_fmnist.py --workdir runs/bg300

``experiments/bayes_compress_fmnist.py`` runs this over several lambda values.
"""

from jaxnas.config import default_config


def get_config():
    config = default_config("bayes-group")
    config.data.dataset = "fashion_mnist"
    config.data.batch_size = 128
    config.run.eval_limit = 0
    config.model = "lenet300"
    config.groups.dense = "element,output,input"
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
