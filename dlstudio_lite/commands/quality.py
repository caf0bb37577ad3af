"""``dlstudio-lite quality``: train the shape feature network, and score a model with it.

``quality train`` writes what :mod:`dlstudio_lite.quality` loads (the shipped copy is in
``data/checkpoints/shape_features/``); ``quality score`` prints (and writes as JSON) the
Frechet distance and valid-shape rate of a trained model's reconstructions, or of a
prior's samples, against the shapes test split. The numbers are not ImageNet FID.
"""
from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import torch

from ..config import quick_mode
from ..recipes import recipe


def add_cli(sub) -> None:
    p = sub.add_parser("quality", help="sample-quality measure: train its feature network, score a model",
                       description="The course's sample-quality measure (a Frechet distance on features of "
                       "a small network trained on the shapes data, and a valid-shape rate). Not ImageNet FID.")
    qsub = p.add_subparsers(dest="quality_command", required=True, metavar="ACTION")

    t = qsub.add_parser("train", help="train the shape feature network",
                        description="Train the shape feature network (count, damage-kind and severity heads) "
                        "on the CPU. Writes checkpoint.pt and metrics.json (its own test accuracies and "
                        "sanity-check distances) into --out.",
                        epilog="the shipped copy (recipe shape_features): dlstudio-lite quality train --out data/checkpoints/shape_features")
    from ..shape_features import train_shape_features
    found = recipe("shape_features")  # train_shape_features' defaults, shrunk in quick mode
    defaults = {**{k: p.default for k, p in inspect.signature(train_shape_features).parameters.items()},
           **found.data, **found.train}
    t.add_argument("--out", required=True, type=Path, help="output folder (created)")
    t.add_argument("--steps", type=int, default=defaults["steps"], help="(default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                   help="64x64 images per step, plus half as many 32x32 (default: %(default)s)")
    t.add_argument("--num-images", type=int, default=defaults["num_images"],
                   help="64x64 shapes images to draw from, the last 200 held out (default: %(default)s)")
    t.add_argument("--lr", type=float, default=defaults["lr"], help="(default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(func=_cli_train)

    s = qsub.add_parser("score", help="Frechet distance and valid-shape rate of a model's images",
                        description="Score a trained model against the shapes test split: its "
                        "reconstructions (autoencoder, vae, vqvae, vqgan) or, with --prior, samples "
                        "from the prior decoded by the VQ model.",
                        epilog="example: dlstudio-lite quality score data/checkpoints/vqgan_shapes/checkpoint.pt "
                               "--prior data/checkpoints/prior_shapes/checkpoint.pt")
    s.add_argument("checkpoint", type=Path, help="checkpoint.pt of a model trained by `dlstudio-lite train`")
    s.add_argument("--prior", type=Path, default=None,
                   help="checkpoint.pt of `train prior` (or of `train pixelcnn --level top`): score its samples")
    s.add_argument("--bottom-prior", type=Path, default=None,
                   help="with a top prior over a VQ-VAE-2 (PixelCNN or transformer): checkpoint.pt of `train pixelcnn --level bottom`")
    s.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="with --prior: sampling seeds to report as mean and spread (default: --seed alone)")
    s.add_argument("--n", type=int, default=200, help="samples to draw with --prior (default 200)")
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--decode-steps", type=int, default=None,
                   help="with a MaskGIT prior (`train maskgit`): rounds of parallel decoding "
                        "(default: the prior's own)")
    s.add_argument("--choice-temperature", type=float, default=None,
                   help="with a MaskGIT prior: the Gumbel noise on which drawn codes to keep "
                        "(0: surest first; large: a random order; default: the prior's own)")
    s.add_argument("--fresh", type=int, default=None, metavar="N",
                   help="reconstructions only: also score N freshly generated images that no split uses "
                        "(a larger sample than the 200 test images; recorded as recon_fresh)")
    s.add_argument("--features", type=Path, default=None, help="feature network (default: the shipped one)")
    s.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    s.add_argument("--update-metrics", action="store_true",
                   help="merge recon_fd / sample_fd, the valid-shape rate and the split used into the "
                        "metrics.json beside the checkpoint (--prior: beside the prior); `train` and "
                        "`train prior` record them themselves on the shapes data")
    s.set_defaults(func=_cli_score)


def _cli_train(args) -> int:
    from ..quality import frechet_distance, load_feature_net, save_feature_net, valid_shape_rate
    from ..shape_features import DAMAGES, damage, shape_splits, train_shape_features

    start = time.perf_counter()
    net, history, metrics = train_shape_features(steps=args.steps, batch_size=args.batch_size,
                                                 num_images=args.num_images, lr=args.lr, seed=args.seed,
                                                 progress=not args.no_progress)
    # Sanity checks, recorded beside the accuracies: real against real must be small, and
    # every kind of damage must push the distance up and the valid-shape rate down.
    splits = shape_splits(args.num_images)
    test, train = splits["test64"][0], splits["train64"][0][:len(splits["test64"][0])]
    levels = {"blur": 1.0, "noise": 0.2, "colour": 0.3, "erase": 0.3, "blobs": 1.0, "grey": 0.7}
    sanity = {"n_images": len(test), "fd_train_vs_test": frechet_distance(train, test, net),
              "valid_shape_rate_test": valid_shape_rate(test, net)}
    for kind in DAMAGES:
        bad = damage(test, kind, levels[kind], seed=1)
        sanity[f"fd_{kind}_{levels[kind]}"] = frechet_distance(test, bad, net)
        sanity[f"valid_shape_rate_{kind}_{levels[kind]}"] = valid_shape_rate(bad, net)
    metrics.update(sanity=sanity, quick_mode=quick_mode(), total_seconds=time.perf_counter() - start,
                   note="features of a small network trained on the shapes data, not ImageNet FID")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_feature_net(net, out / "checkpoint.pt", history, config, metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    load_feature_net(out / "checkpoint.pt")          # fail here, not later, if it does not load back
    print(f"shape features: count accuracy {metrics['count_accuracy_64px']:.3f} (64px) "
          f"{metrics['count_accuracy_32px']:.3f} (32px), clean-vs-damaged "
          f"{metrics['mixed_clean_vs_damaged_accuracy_64px']:.3f}; FD train vs test "
          f"{sanity['fd_train_vs_test']:.2f}; {metrics['train_seconds']:.0f} s; wrote {out}")
    return 0


def _cli_score(args) -> int:
    from ..checkpoint import load_model
    from ..data import ShapesDataset
    from ..quality import load_feature_net, quality_report

    net = load_feature_net(args.features)
    model = load_model(args.checkpoint)
    size = int(model.hparams.get("image_size", 64))
    test_split = ShapesDataset("test", image_size=size)
    test = test_split.tensors()
    seeds = args.seeds or [args.seed]
    prior = load_model(args.prior) if args.prior is not None else None   # its type picks the sampler
    rounds = _rounds(args, prior)
    fresh = None
    with torch.no_grad():
        if args.prior is None:
            if not hasattr(model, "reconstruct"):
                raise ValueError(f"{args.checkpoint} holds a {type(model).__name__}, which cannot "
                                 f"reconstruct: expected an autoencoder, vae, vqvae or vqgan")
            fakes = [torch.cat([model.reconstruct(b) for b in test.split(50)]).clamp(-1, 1)]
            what = "reconstructions"
            fresh = _fresh(args, model, size, net) if args.fresh else None
        else:
            if args.fresh:
                raise ValueError("--fresh scores reconstructions; it cannot be combined with --prior")
            start = time.perf_counter()
            fakes = [_samples(args, model, prior, seed) for seed in seeds]
            # per seed: drawing the codes and decoding them (loading not included)
            sample_seconds = (time.perf_counter() - start) / len(seeds)
            what = f"{args.n} prior samples"
    runs = [quality_report(test, fake, net) for fake in fakes]
    mean = lambda key: sum(r[key] for r in runs) / len(runs)
    std = lambda key: float(torch.tensor([r[key] for r in runs]).std()) if len(runs) > 1 else 0.0
    report = {"what": what, "checkpoint": str(args.checkpoint), "prior": str(args.prior) if args.prior else None,
              "real": f"shapes test split, {len(test)} images of {size}x{size}",
              "fd": mean("fd"), "valid_shape_rate": mean("valid_shape_rate"), "shape_check": mean("shape_check")}
    if fresh is not None:
        report["fresh"] = fresh
    if args.prior is not None:
        report.update(seeds=seeds, sample_seconds=sample_seconds, fd_std=std("fd"), valid_shape_rate_std=std("valid_shape_rate"),
                      shape_check_std=std("shape_check"), per_seed=[
                          {k: r[k] for k in ("fd", "valid_shape_rate", "shape_check")} for r in runs])
    spread = lambda key, fmt="": f" +- {report[key + '_std']:{fmt or '.2f'}}" if len(runs) > 1 else ""
    print(f"{what} of {args.checkpoint}: FD {report['fd']:.2f}{spread('fd')}, valid-shape rate "
          f"{report['valid_shape_rate']:.1%}{spread('valid_shape_rate', '.1%')}, flat-shape check "
          f"{report['shape_check']:.1%}{spread('shape_check', '.1%')} (shape features, not ImageNet FID)"
          + (f"; {len(seeds)} seeds" if len(runs) > 1 else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.update_metrics:
        from ..paths import atomic_write
        prefix = "sample" if args.prior is not None else "recon"
        path = (args.prior if args.prior is not None else args.checkpoint).parent / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.update({f"{prefix}_fd": report["fd"], f"{prefix}_valid_shape_rate": report["valid_shape_rate"],
                        "quality_split": f"{report['real']}; {len(fakes[0])} {prefix} images; shape features "
                                         "(dlstudio_lite.quality), not ImageNet FID"})
        why_failed, passing_kinds = {}, {}      # summed over the sampling seeds
        for r in runs:
            for total, counts in ((why_failed, r["shape_check_why_failed"]),
                                  (passing_kinds, r["shape_check_passing_kinds"])):
                for key, count in counts.items():
                    total[key] = total.get(key, 0) + count
        if args.prior is not None:
            setting = f"temperature {args.temperature}, top-k {args.top_k}" + \
                (f", {rounds} rounds" if rounds is not None else "") + \
                (f", choice temperature {args.choice_temperature}" if args.choice_temperature is not None else "")
            metrics["sample_settings"] = setting
            shape = {"mean": report["shape_check"], "std": report["shape_check_std"], "seeds": seeds,
                     "rates": [r["shape_check"] for r in runs], "n": args.n, "setting": setting,
                     "why_failed": why_failed, "passing_kinds": passing_kinds}
            metrics["sample_shape_check"] = shape
            # Every setting and sampling seed scored so far stays on record (a difference
            # between settings means little unless it beats the spread over seeds); the
            # top-level keys hold the last run.
            entry = metrics.setdefault("samples_by_setting", {}).setdefault(setting, {})
            entry.update({"sample_fd": report["fd"], "sample_valid_shape_rate": report["valid_shape_rate"],
                          "n": len(fakes[0]), "seed": seeds[0] if len(seeds) == 1 else seeds,
                          "sample_shape_check": {k: shape[k] for k in ("mean", "std", "rates")},
                          "passing_kinds": passing_kinds,
                          # wall time here, threads as set: compare settings of one machine only
                          "sample_seconds": sample_seconds, "torch_threads": torch.get_num_threads()})
            by_seed = entry.setdefault("by_seed", {})
            for seed, run in zip(seeds, runs):
                by_seed[str(seed)] = {"sample_fd": run["fd"], "sample_valid_shape_rate": run["valid_shape_rate"],
                                      "sample_shape_check": run["shape_check"], "n": len(fakes[0])}
            entry["seed_spread"] = _seed_spread(by_seed)
        else:
            from ..quality import colour_report, recon_kinds_kept
            holes = torch.from_numpy(test_split.holes)
            kept = recon_kinds_kept(test, runs[0])
            # each test image's verdict, in the split's order: two runs compare image by image
            metrics["recon_shape_check"] = {"rate": report["shape_check"], "n": len(fakes[0]),
                                            "why_failed": why_failed, "passing_kinds": passing_kinds,
                                            "passed": runs[0]["shape_check_passed"],
                                            "kinds_kept": kept}
            print(f"passing with every shape's kind kept: {kept:.1%}")
            metrics["recon_colour"] = colour_report(fakes[0], test, holes)
            if fresh is not None:
                metrics["recon_fresh"] = fresh
        text = (json.dumps(metrics, indent=2) + "\n").encode()
        atomic_write(path, lambda f: f.write(text))
    return 0


def _fresh(args, model, size: int, net) -> dict:
    """The reconstructions of ``args.fresh`` fresh images (data.fresh_shapes), scored as the test
    split's are: check (with each image's verdict), FD against the originals, learned rate, colour."""
    from ..data import FRESH_START, fresh_shapes
    from ..quality import colour_report, quality_report

    if args.fresh < 2:
        raise ValueError(f"--fresh needs at least 2 images (FD needs a covariance), got {args.fresh}")
    images, holes = fresh_shapes(args.fresh, size)
    recons = torch.cat([model.reconstruct(b) for b in images.split(50)]).clamp(-1, 1)
    r = quality_report(images, recons, net)
    fresh = {"n": args.fresh, "generator_start": FRESH_START, "fd": r["fd"], "valid_shape_rate": r["valid_shape_rate"],
             "shape_check": r["shape_check"], "why_failed": r["shape_check_why_failed"],
             "passed": r["shape_check_passed"], "colour": colour_report(recons, images, holes)}
    print(f"reconstructions of {args.fresh} fresh images: FD {r['fd']:.2f}, valid-shape rate "
          f"{r['valid_shape_rate']:.1%}, flat-shape check {r['shape_check']:.1%}, brightness error "
          f"{fresh['colour']['brightness_bias']:+.1f} levels")
    return fresh


def _seed_spread(by_seed: dict) -> dict:
    """Mean and standard deviation over sampling seeds of one setting's scores (std 0 for one seed)."""
    out = {"seeds": len(by_seed)}
    for key in ("sample_fd", "sample_valid_shape_rate", "sample_shape_check"):
        if not all(key in run for run in by_seed.values()):
            continue  # a seed scored before the flat-shape check existed
        values = torch.tensor([float(run[key]) for run in by_seed.values()], dtype=torch.float64)
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
    return out


def _rounds(args, prior) -> int | None:
    """The rounds of parallel decoding with a MaskGIT ``prior`` (None for any other prior or
    none); ``--decode-steps`` for another prior is refused rather than ignored."""
    given = [f for f, v in (("--decode-steps", args.decode_steps), ("--choice-temperature", args.choice_temperature))
             if v is not None]
    if prior is None:
        if given:
            raise ValueError(f"{given[0]} goes with --prior (a MaskGIT prior)")
        return None
    from ..masked_prior import MaskedPrior
    if not isinstance(prior, MaskedPrior):
        if given:
            raise ValueError(f"{given[0]} needs a MaskGIT prior (`train maskgit`), but {args.prior} "
                             f"holds a {type(prior).__name__}, which draws one code per step")
        return None
    return args.decode_steps or prior.decode_steps     # bad values: MaskedPrior.sample raises


def _samples(args, vq, prior, seed: int) -> torch.Tensor:
    """``args.n`` images sampled with ``seed`` from ``prior`` (loaded from ``args.prior``; a
    PixelCNN with the bottom prior of ``args``), decoded by ``vq``."""
    from ..checkpoint import load_model
    from ..pixelcnn import PixelCNN, sample_vqvae2
    from ..prior import as_prior, sample_images
    from ..vqvae2 import VQVAE2

    if isinstance(vq, VQVAE2) and not isinstance(prior, PixelCNN):
        return _vqvae2_samples_from_a_transformer(args, vq, as_prior(prior, args.prior), seed)
    if isinstance(prior, PixelCNN):
        if args.bottom_prior is None:
            raise ValueError(f"{args.prior} holds a PixelCNN: expected --bottom-prior with the bottom-level "
                             f"PixelCNN as well (VQ-VAE-2 samples need both levels)")
        return sample_vqvae2(vq, prior.eval(), load_model(args.bottom_prior).eval(), args.n,
                             temperature=args.temperature, top_k=args.top_k,
                             generator=torch.Generator().manual_seed(seed))
    return sample_images(as_prior(prior, args.prior), vq, args.n, temperature=args.temperature,
                         top_k=args.top_k, seed=seed, **_rounds_kwargs(args))


def _rounds_kwargs(args) -> dict:
    """``decode_steps`` and ``choice_temperature`` for a MaskGIT prior's ``sample``, as given."""
    return {k: v for k, v in (("decode_steps", args.decode_steps), ("choice_temperature", args.choice_temperature))
            if v is not None}


def _vqvae2_samples_from_a_transformer(args, vq, prior, seed: int) -> torch.Tensor:
    """Top codes from a transformer (`train prior` on a VQ-VAE-2 models its top grid), then,
    with ``--bottom-prior``, bottom codes from that PixelCNN given them (as appendix 9
    compares the two top priors), else the top codes decoded alone -> ``(n, C, H, W)``."""
    from ..checkpoint import load_model
    if prior.num_codes != vq.num_codes["top"] or tuple(prior.latent_shape) != tuple(vq.latent_shapes["top"]):
        raise ValueError(f"the prior models {tuple(prior.latent_shape)} grids of {prior.num_codes} codes, but the "
                         f"VQ-VAE-2's top level has {vq.latent_shapes['top']} grids of {vq.num_codes['top']}")
    top = prior.sample(args.n, temperature=args.temperature, top_k=args.top_k, seed=seed, **_rounds_kwargs(args))
    bottom = None
    if args.bottom_prior is not None:
        bottom_prior = load_model(args.bottom_prior).eval()
        bottom = bottom_prior.sample(args.n, args.temperature, condition=top, top_k=args.top_k,
                                     generator=torch.Generator().manual_seed(seed + 1))
    return vq.eval().decode_codes(top, bottom).clamp(-1, 1)
