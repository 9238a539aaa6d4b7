"""Training speed of vae_course against a plain PyTorch loop of the same model.

    python benchmarks/bench_train.py [--repeats 3] [--iwae-images 200] [--profile]

Both sides train the source tutorial's MNIST VAE (784-512-512-2x2 encoder,
2-512-512-784 sigmoid decoder, Gaussian likelihood with sigma = 0.5, analytic
KL, Adam with learning rate 1e-3, batch 64) for one epoch over the 60,000
training images plus one validation pass over the 10,000 test images, in
turns: package, reference, package, reference, ... Each epoch's wall time and
the process's peak resident memory during it are recorded. Prints seconds per
epoch for each side, their median ratio, and the IWAE evaluation throughput
(images per second at k = 1000).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import torch
from torch import nn

import vae_course
from vae_course.data import load_mnist_float
from vae_course.evaluate import iwae_bound
from vae_course.models import build_vae
from vae_course.train import train_vae

BATCH = 64


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter for this process (Linux; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Reference(nn.Module):
    """The same VAE written directly in PyTorch."""

    def __init__(self, latent_dim=2):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2 * latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid()
        )

    def losses(self, x):
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        kl = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum(-1)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        x_mean = self.decoder(z)
        nll = (0.5 * ((x.flatten(1) - x_mean) / 0.5).square() + math.log(0.5) + 0.5 * math.log(2 * math.pi)).sum(-1)
        return nll + kl


def reference_epoch(model, opt, x_train, x_val):
    model.train()
    perm = torch.randperm(len(x_train))
    total = 0.0
    for i in range(0, len(x_train), BATCH):
        x = x_train[perm[i : i + BATCH]]
        opt.zero_grad()
        loss = model.losses(x).mean()
        loss.backward()
        opt.step()
        total += loss.item() * len(x)
    model.eval()
    with torch.no_grad():
        val = sum(model.losses(x_val[i : i + BATCH]).sum().item() for i in range(0, len(x_val), BATCH))
    return total / len(x_train), val / len(x_val)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="epochs per side (alternating)")
    ap.add_argument("--iwae-images", type=int, default=200, help="test images for the IWAE throughput (0 skips)")
    ap.add_argument("--profile", action="store_true", help="cProfile one package epoch and print the top entries")
    ap.add_argument(
        "--reference-adam",
        choices=["default", "fused"],
        default="default",
        help="the reference's torch.optim.Adam: PyTorch's default CPU implementation, or fused=True",
    )
    args = ap.parse_args(argv)

    (x_train, _), (x_test, _) = load_mnist_float()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, keras {keras.__version__}, "
        f"vae_course {vae_course.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"reference Adam: {args.reference_adam}"
    )

    keras.utils.set_random_seed(0)
    vae = build_vae()
    torch.manual_seed(0)
    ref = Reference()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, fused=args.reference_adam == "fused" or None)
    xt, xv = torch.from_numpy(x_train), torch.from_numpy(x_test)

    # one short warm-up each (first-call costs: allocation, Keras's tracing of the step)
    train_vae(vae, x_train[:3200], x_test[:640], epochs=1, seed=None, verbose=0)
    reference_epoch(ref, opt, xt[:3200], xv[:640])

    pkg, refs, pkg_cpu, ref_cpu, pkg_mem, ref_mem = [], [], [], [], [], []
    for r in range(args.repeats):
        reset_peak_rss()
        t, c = time.perf_counter(), time.process_time()
        h = train_vae(vae, x_train, x_test, epochs=1, batch_size=BATCH, seed=None, verbose=0).history
        pkg.append(time.perf_counter() - t)
        pkg_cpu.append(time.process_time() - c)
        pkg_mem.append(peak_rss_mb())
        reset_peak_rss()
        t, c = time.perf_counter(), time.process_time()
        tr, va = reference_epoch(ref, opt, xt, xv)
        refs.append(time.perf_counter() - t)
        ref_cpu.append(time.process_time() - c)
        ref_mem.append(peak_rss_mb())
        print(
            f"repeat {r + 1}: vae_course {pkg[-1]:6.2f} s (val loss {h['val_loss'][0]:.2f})   "
            f"plain PyTorch {refs[-1]:6.2f} s (val loss {va:.2f})   ratio {pkg[-1] / refs[-1]:.3f}",
            flush=True,
        )

    ratios = [a / b for a, b in zip(pkg, refs)]
    cpu_ratios = [a / b for a, b in zip(pkg_cpu, ref_cpu)]
    print()
    print("| | wall s / epoch (median) | CPU s / epoch (median) | peak RSS (MB) |")
    print("|---|---|---|---|")
    print(
        f"| vae_course (`train_vae`, Keras fit) | {statistics.median(pkg):.2f} | {statistics.median(pkg_cpu):.2f} | {max(pkg_mem):.0f} |"
    )
    print(
        f"| plain PyTorch loop | {statistics.median(refs):.2f} | {statistics.median(ref_cpu):.2f} | {max(ref_mem):.0f} |"
    )
    print(
        f"median ratio vae_course / PyTorch, wall time: {statistics.median(ratios):.3f} "
        f"(per repeat: {', '.join(f'{q:.3f}' for q in ratios)})"
    )
    print(
        f"median ratio vae_course / PyTorch, CPU time:  {statistics.median(cpu_ratios):.3f} "
        f"(per repeat: {', '.join(f'{q:.3f}' for q in cpu_ratios)})"
    )

    if args.iwae_images:
        n = args.iwae_images
        t = time.perf_counter()
        iwae_bound(vae, x_test[:n], 1000)
        dt = time.perf_counter() - t
        print(f"IWAE bound, k = 1000: {n / dt:.1f} images/s ({n} images in {dt:.1f} s)")

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        train_vae(vae, x_train[:19200], epochs=1, batch_size=BATCH, seed=None, verbose=0)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
