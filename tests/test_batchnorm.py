"""jaxnas.ops.BatchNorm is PyTorch's BatchNorm: closed forms, flax's layout, every network."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.genotype import DARTS_V2
from jaxnas.models.darts_net import NetworkCIFAR
from jaxnas.models.nb201_net import NB201Network, NB201SuperNet
from jaxnas.models.resnet18 import ResNet18
from jaxnas.ops import BN_EPSILON, BatchNorm
from jaxnas.spaces.nb201 import NB201Arch
from jaxnas.supernet import SuperNet
from jaxnas.width import MobileNetV2, PreActResNet, PreResNet

TORCH_MOMENTUM = 0.1  # PyTorch's: running <- (1 - m) running + m batch_stat


def _batches(shape, steps, seed=0):
    """Batches with a per-channel offset and scale, so mean and variance both matter."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    loc, scale = rng.normal(0, 3, c), rng.uniform(0.5, 3, c)
    return [loc + scale * rng.normal(size=shape) for _ in range(steps)]


def _closed_form(batches):
    """PyTorch's running mean and variance after training forwards on ``batches`` (float64)."""
    mean, var = np.zeros(batches[0].shape[-1]), np.ones(batches[0].shape[-1])
    for x in batches:
        flat = x.reshape(-1, x.shape[-1])  # n = N*H*W rows per channel
        mean = (1 - TORCH_MOMENTUM) * mean + TORCH_MOMENTUM * flat.mean(0)
        var = (1 - TORCH_MOMENTUM) * var + TORCH_MOMENTUM * flat.var(0, ddof=1)  # unbiased
    return mean, var


def _train(bn, variables, batches):
    outs = []
    for x in batches:
        y, upd = bn.apply(
            variables, jnp.asarray(x), use_running_average=False, mutable=["batch_stats"]
        )
        variables = {**variables, "batch_stats": upd["batch_stats"]}
        outs.append(np.asarray(y))
    return variables, outs


def _random_affine(variables, seed):
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(1.0, 0.5, v.shape)) for k, v in variables["params"].items()}
    return {**variables, "params": params}


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 4)])  # NHWC (n = 60), (N, C) (n = 7)
@pytest.mark.parametrize("steps", [1, 5])
def test_running_statistics_are_pytorch_closed_form(x64, shape, steps):
    batches = _batches(shape, steps)
    bn = BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(batches[0]), use_running_average=False)
    variables, _ = _train(bn, variables, batches)
    mean, var = _closed_form(batches)
    stats = variables["batch_stats"]
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(stats["var"], var, rtol=1e-12)
    # and not flax's update, which takes the biased batch variance
    flat = batches[0].reshape(-1, shape[-1])
    flax_var = (1 - TORCH_MOMENTUM) + TORCH_MOMENTUM * flat.var(0)
    if steps == 1:
        assert not np.allclose(stats["var"], flax_var, rtol=1e-6)


@pytest.mark.parametrize("affine", [True, False])
def test_normalised_output_train_and_eval_closed_form(x64, affine):
    batches = _batches((3, 4, 4, 5), 4, seed=1)
    bn = BatchNorm(use_scale=affine, use_bias=affine)
    variables = bn.init(jax.random.key(0), jnp.asarray(batches[0]), use_running_average=False)
    if affine:
        variables = _random_affine(variables, seed=2)
    gamma = np.asarray(variables["params"]["scale"]) if affine else 1.0
    beta = np.asarray(variables["params"]["bias"]) if affine else 0.0
    variables, outs = _train(bn, variables, batches)
    for x, y in zip(batches, outs):  # train: batch mean, *biased* batch variance
        flat = x.reshape(-1, x.shape[-1])
        want = (x - flat.mean(0)) / np.sqrt(flat.var(0) + BN_EPSILON) * gamma + beta
        np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-11)
    mean, var = _closed_form(batches)
    x = _batches((2, 3, 3, 5), 1, seed=3)[0]
    y = bn.apply(variables, jnp.asarray(x), use_running_average=True)
    want = (x - mean) / np.sqrt(var + BN_EPSILON) * gamma + beta  # eval: running statistics
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-11)


def test_matches_torch_batchnorm2d(x64):
    torch = pytest.importorskip("torch")
    batches = _batches((4, 5, 3, 6), 3, seed=4)
    ref = torch.nn.BatchNorm2d(6).double()  # momentum 0.1, eps 1e-5
    bn = BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(batches[0]), use_running_average=False)
    variables = _random_affine(variables, seed=5)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(np.asarray(variables["params"]["scale"])))
        ref.bias.copy_(torch.tensor(np.asarray(variables["params"]["bias"])))
    ref.train()
    variables, outs = _train(bn, variables, batches)
    with torch.no_grad():
        for x, y in zip(batches, outs):
            want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
            np.testing.assert_allclose(y, want.transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-11)
        stats = variables["batch_stats"]
        np.testing.assert_allclose(stats["mean"], ref.running_mean.numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(stats["var"], ref.running_var.numpy(), rtol=1e-12)
        ref.eval()
        x = _batches((2, 3, 3, 6), 1, seed=6)[0]
        want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    y = bn.apply(variables, jnp.asarray(x), use_running_average=True)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_same_variables_and_outputs_as_flax_batchnorm(affine, dtype):
    """Same tree (names, collections, shapes, dtypes) and auto-name as ``nn.BatchNorm``, the
    same outputs and running mean; only the running variance's update differs, by n/(n-1)."""

    def wrap(cls):
        class Net(nn.Module):
            @nn.compact
            def __call__(self, x, train):
                kw = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
                return cls(use_scale=affine, use_bias=affine, **kw)(x)

        return Net()

    x = jnp.asarray(_batches((2, 3, 3, 4), 1, seed=7)[0], dtype)
    ours, theirs = wrap(BatchNorm), wrap(nn.BatchNorm)
    v_ours = ours.init(jax.random.key(0), x, train=True)
    v_theirs = theirs.init(jax.random.key(0), x, train=True)
    spec = lambda v: jax.tree.map(lambda a: (a.shape, a.dtype), v)  # noqa: E731
    assert spec(v_ours) == spec(v_theirs)
    assert list(v_ours["batch_stats"]) == ["BatchNorm_0"]
    for train in (True, False):
        y_ours, s_ours = ours.apply(v_ours, x, train=train, mutable=["batch_stats"])
        y_theirs, s_theirs = theirs.apply(v_theirs, x, train=train, mutable=["batch_stats"])
        assert y_ours.dtype == y_theirs.dtype
        np.testing.assert_array_equal(y_ours, y_theirs)
        s_ours, s_theirs = (
            s_ours["batch_stats"]["BatchNorm_0"],
            s_theirs["batch_stats"]["BatchNorm_0"],
        )
        np.testing.assert_array_equal(s_ours["mean"], s_theirs["mean"])
        if train:  # var = 0.9 * 1 + 0.1 * var_B (flax) or var_B * n / (n - 1) (PyTorch)
            n = x.size // x.shape[-1]
            np.testing.assert_allclose(
                s_ours["var"] - 0.9, (s_theirs["var"] - 0.9) * n / (n - 1), rtol=1e-5
            )
        else:
            np.testing.assert_array_equal(s_ours["var"], s_theirs["var"])


@pytest.mark.parametrize(
    "model",
    [
        SuperNet(num_classes=3, init_channels=2, layers=3),
        NetworkCIFAR(DARTS_V2, 3, init_channels=4, layers=3, auxiliary=True),
        NB201SuperNet(3, init_channels=4, cells_per_stage=1),
        NB201Network(NB201Arch(("nor_conv_3x3",) * 6), 3, init_channels=4, cells_per_stage=1),
        ResNet18(num_classes=3, width=4),
        PreActResNet(3, stages=(4, 8), blocks=(1, 1), strides=(1, 2), stem=4),
        PreResNet(20, 3),
        MobileNetV2(3),
    ],
    ids=lambda m: type(m).__name__,
)
def test_every_network_uses_the_pytorch_batchnorm(model):
    """Each network's BNs are :class:`BatchNorm` (and none is flax's), traced without compiling."""
    seen = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(
            context.module, nn.BatchNorm | BatchNorm
        ):
            seen.append(type(context.module))
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    with nn.intercept_methods(record):
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        jax.eval_shape(lambda x: model.init(rngs, x, train=True), x)
    assert seen and set(seen) == {BatchNorm}
