"""The benchmark's plain-PyTorch reference is the same model as the package's VAE.

benchmarks/bench_train.py times vae_course against a hand-written PyTorch loop;
the comparison only means something if both compute the same function.
"""

import importlib.util
import math
from pathlib import Path

import torch

from vae_course.models import build_vae

spec = importlib.util.spec_from_file_location(
    "bench_train", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_same_parameter_count():
    assert (
        sum(p.numel() for p in bench.Reference().parameters())
        == build_vae().count_params()
        == 1_333_012
    )


def test_same_function_with_the_same_weights():
    vae, ref = build_vae(), bench.Reference()
    dense = [vae.encoder.get_layer(n) for n in ("enc_dense_0", "enc_dense_1", "z_params")]
    dense += [vae.decoder.get_layer(n) for n in ("dec_dense_0", "dec_dense_1", "pixels")]
    linear = [m for m in ref.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for k, t in zip(dense, linear):
            w, b = k.get_weights()
            t.weight.copy_(torch.from_numpy(w.T))
            t.bias.copy_(torch.from_numpy(b))
    x = torch.rand(8, 28, 28)
    mu, log_var = ref.encoder(x).chunk(2, dim=-1)
    z_mean, z_log_var = vae.encode(x)
    torch.testing.assert_close(mu, z_mean.cpu())  # the package's tensors live on Keras's device
    torch.testing.assert_close(log_var, z_log_var.cpu())
    z = torch.randn(8, 2)
    torch.testing.assert_close(ref.decoder(z), vae.decoder(z).reshape(8, 784).cpu())
    # the loss with the noise fixed: the same negative ELBO
    torch.manual_seed(0)
    eps = torch.randn(8, 2).to(z_mean.device)
    ours = vae.log_likelihood(x, vae.decoder(z_mean + torch.exp(0.5 * z_log_var) * eps)).cpu()
    torch.manual_seed(0)
    theirs = ref.losses(x)
    kl = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum(-1)
    torch.testing.assert_close(theirs, -ours + kl, rtol=1e-5, atol=1e-3)
    assert math.isfinite(float(theirs.detach().sum()))
