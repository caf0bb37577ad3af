"""Pictures for the notebooks: image grids, input/reconstruction rows, curves, widgets.

Grids come from ``torchvision.utils.make_grid``; this module only adds denormalisation
and matplotlib layout.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from .data import denormalize


def _check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor with C = 1 or 3, got {shape}")
    return images.detach().float().cpu()


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """``(B, C, H, W)`` images in [-1, 1] -> one ``(3, H', W')`` grid in [0, 1]."""
    return make_grid(denormalize(_check_images(images)), nrow=nrow, padding=padding, pad_value=1.0)


def input_output_pairs(inputs: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    """The lecture's layout, each input with its reconstruction on its right, in one box:
    ``(B, C, H, W)`` twice -> ``(B, C, H, 2W)``, ready for :func:`show_images`."""
    inputs, recons = _check_images(inputs, "inputs"), _check_images(recons, "recons")
    if inputs.shape != recons.shape:
        raise ValueError(f"inputs and recons must have the same shape, got {tuple(inputs.shape)} "
                         f"and {tuple(recons.shape)}")
    return torch.cat([inputs, recons.clamp(-1, 1)], dim=3)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 1.0):
    """Show images in [-1, 1] as a grid on ``ax`` (a new figure if None); returns the Axes."""
    grid = image_grid(images, nrow=nrow)
    if ax is None:
        h, w = grid.shape[1:]
        _, ax = plt.subplots(figsize=(scale * w / 40, scale * h / 40))
    # nearest: small images must show their pixels (and holes), not a smoothed version
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_reconstructions(inputs: torch.Tensor, recons: torch.Tensor, n: int = 8, title: str | None = None):
    """The lecture's layout: a row of inputs above the row of their reconstructions."""
    inputs, recons = _check_images(inputs, "inputs")[:n], _check_images(recons, "recons")[:n]
    if inputs.shape != recons.shape:
        raise ValueError(f"inputs and recons must have the same shape, got {tuple(inputs.shape)} "
                         f"and {tuple(recons.shape)}")
    fig, axes = plt.subplots(2, 1, figsize=(1.2 * len(inputs), 2.8))
    show_images(inputs, nrow=len(inputs), title="input", ax=axes[0])
    show_images(recons, nrow=len(recons), title="reconstruction", ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_side_by_side(rows: Mapping[str, torch.Tensor], n: int = 8, title: str | None = None):
    """Several image rows with labels, e.g. ``{"input": x, "VAE": a, "VQ-VAE": b}``."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * n, 1.4 * len(rows)), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        show_images(_check_images(images, label)[:n], nrow=n, ax=ax)
        ax.set_title(label, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: Mapping[str, Sequence], keys: Sequence[str] | None = None, ax=None,
                 logy: bool = False, title: str | None = None):
    """Plot logged values; ``history[key]`` is a list of ``(step, value)`` pairs or of values."""
    keys = list(keys or history.keys())
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history has no {missing}; available keys: {sorted(history)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        points = list(history[key])
        if points and isinstance(points[0], (tuple, list)):
            steps, values = zip(*points)
        else:
            steps, values = range(len(points)), points
        ax.plot(steps, [float(v) for v in values], label=key)
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def widgets_available() -> bool:
    """True inside a Jupyter kernel with ipywidgets installed."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _control_defaults(fn: Callable, controls: Mapping) -> dict:
    params = inspect.signature(fn).parameters
    unknown = [name for name in controls if name not in params]
    if unknown:
        raise ValueError(f"{fn.__name__}() has no parameter(s) {unknown}; it takes {list(params)}")
    defaults = {}
    for name, control in controls.items():
        if isinstance(control, tuple):
            if len(control) != 4:
                raise ValueError(f"control {name!r} must be (min, max, step, default), got {control!r}")
            defaults[name] = control[3]
        else:
            defaults[name] = control.value
    return defaults


def _render_png(fn: Callable, kwargs: Mapping) -> bytes:
    """Call ``fn(**kwargs)`` and return the figure(s) it drew as one PNG (stacked vertically).

    ``plt.show`` is silenced during the call so that the figure is not also shown (inline
    backend) or warned about (Agg); the figures are closed afterwards.
    """
    import io
    from unittest import mock

    from PIL import Image

    before = set(plt.get_fignums())
    try:
        with mock.patch.object(plt, "show", lambda *_args, **_kwargs: None):
            fn(**kwargs)
        figures = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        if not figures:
            raise ValueError(f"{fn.__name__}() must draw a matplotlib figure, but it drew none")
        pictures = []
        for fig in figures:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", bbox_inches="tight")
            pictures.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA"))
    finally:
        for n in set(plt.get_fignums()) - before:
            plt.close(n)
    if len(pictures) == 1:
        return buffer.getvalue()
    stacked = Image.new("RGBA", (max(p.width for p in pictures), sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        stacked.paste(picture, (0, top))
        top += picture.height
    buffer = io.BytesIO()
    stacked.save(buffer, format="PNG")
    return buffer.getvalue()


def _slider_box(controls: Mapping, on_release: Callable):
    """One slider per control; ``on_release({name: value, ...})`` runs when one is released."""
    import ipywidgets as widgets

    sliders = {}
    for name, control in controls.items():
        if isinstance(control, tuple):
            lo, hi, step, default = control
            kind = widgets.IntSlider if all(isinstance(v, int) for v in control) else widgets.FloatSlider
            # "initial" sizes the label to its text: long names are not cut to "temperat..."
            control = kind(min=lo, max=hi, step=step, value=default, description=name,
                           continuous_update=False, style={"description_width": "initial"},
                           layout=widgets.Layout(width="420px"))
        sliders[name] = control
    for slider in sliders.values():
        slider.observe(lambda _change: on_release({n: s.value for n, s in sliders.items()}), names="value")
    return widgets.VBox(list(sliders.values()))


def _png_bundle(png: bytes, fn: Callable, values: Mapping) -> dict:
    import base64

    call = ", ".join(f"{name}={value!r}" for name, value in values.items())
    return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"<figure: {fn.__name__}({call})>"}


def interactive(fn: Callable, **controls) -> None:
    """Draw ``fn``'s figure with sliders for its arguments; returns nothing.

    Each control is an ``ipywidgets`` widget or a ``(min, max, step, default)`` tuple, and
    ``fn`` draws one matplotlib figure. In a notebook the cell shows the sliders (where a
    kernel runs) above the figure, stored as a plain PNG drawn with the defaults; releasing
    a slider replaces that PNG in place. So an executed, saved or exported notebook
    (nbconvert, GitHub, HTML) always keeps a figure. Outside IPython, ``fn`` is simply
    called once with the defaults.
    """
    defaults = _control_defaults(fn, controls)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        fn(**defaults)
        return None
    handle = None

    def redraw(values):
        handle.update(_png_bundle(_render_png(fn, values), fn, values), raw=True)

    if widgets_available():
        box = _slider_box(controls, redraw)
        # the sliders' own text form would be a long repr; without a kernel, say what they are
        display({"application/vnd.jupyter.widget-view+json": {
                    "version_major": 2, "version_minor": 0, "model_id": box.model_id},
                 "text/plain": f"<sliders for {', '.join(controls)}: run the notebook to move them>"},
                raw=True)
    handle = display(_png_bundle(_render_png(fn, defaults), fn, defaults), raw=True, display_id=True)
    return None


def save_loss_curves(history: Mapping[str, list], path: str | os.PathLike) -> Path:
    """Save the training curves: losses (log scale) and, for VQ models, perplexity."""
    loss_keys = [k for k in history if k.split("/")[-1] in ("loss", "recon", "kl", "vq",
                                                              "d_loss", "g_gan")]
    extra = [k for k in history if k.split("/")[-1].startswith("perplexity")]
    fig, axes = plt.subplots(1, 1 + bool(extra), figsize=(5.5 * (1 + bool(extra)), 4),
                             squeeze=False)
    plot_history(history, keys=loss_keys, ax=axes[0, 0], logy=True)
    axes[0, 0].set_title("losses")
    if extra:
        plot_history(history, keys=extra, ax=axes[0, 1])
        axes[0, 1].set_title("codebook perplexity")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
