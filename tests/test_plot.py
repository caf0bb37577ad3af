import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

from dlstudio_lite import plot

matplotlib.use("Agg")


def test_image_grid_denormalises_and_tiles():
    x = torch.full((6, 3, 8, 8), -1.0)
    x[0] = 1.0
    grid = plot.image_grid(x, nrow=3, padding=2)
    assert grid.shape == (3, 2 * 8 + 3 * 2, 3 * 8 + 4 * 2)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert torch.all(grid[:, 2:10, 2:10] == 1.0)      # the white image
    assert torch.all(grid[:, 2:10, 12:20] == 0.0)     # a black one


def test_grayscale_images_become_rgb_grids():
    assert plot.image_grid(torch.zeros(4, 1, 8, 8), nrow=2).shape[0] == 3


@pytest.mark.parametrize("bad", [torch.zeros(3, 8, 8), torch.zeros(2, 4, 8, 8)])
def test_bad_image_tensors_raise(bad):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) tensor with C = 1 or 3"):
        plot.image_grid(bad)


def test_show_reconstructions_draws_two_rows():
    fig = plot.show_reconstructions(torch.rand(5, 3, 8, 8) * 2 - 1, torch.rand(5, 3, 8, 8) * 2 - 1)
    assert [ax.get_title() for ax in fig.axes] == ["input", "reconstruction"]
    plt.close(fig)
    with pytest.raises(ValueError, match="same shape"):
        plot.show_reconstructions(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 16, 16))


def test_side_by_side_labels_each_row():
    fig = plot.show_side_by_side({"input": torch.zeros(3, 3, 8, 8), "VAE": torch.ones(3, 3, 8, 8)}, n=3)
    assert [ax.get_title() for ax in fig.axes] == ["input", "VAE"]
    plt.close(fig)


def test_plot_history_accepts_pairs_and_plain_lists():
    ax = plot.plot_history({"loss": [(0, 2.0), (10, 1.0)], "kl": [3.0, 2.0, 1.0]}, logy=True)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["loss"].get_xdata()) == [0, 10]
    assert list(lines["kl"].get_ydata()) == [3.0, 2.0, 1.0]
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="no \\['psnr'\\]"):
        plot.plot_history({"loss": [1.0]}, keys=["psnr"])
    plt.close("all")


def test_interactive_outside_ipython_calls_once_with_defaults_and_returns_nothing():
    calls = []

    def draw(k=1, scale=0.5):
        calls.append((k, scale))
        return "figure"

    assert plot.interactive(draw, k=(1, 10, 1, 4), scale=(0.0, 1.0, 0.1, 0.3)) is None
    assert calls == [(4, 0.3)]
    with pytest.raises(ValueError, match="has no parameter"):
        plot.interactive(draw, colour=(0, 1, 1, 0))
    with pytest.raises(ValueError, match=r"\(min, max, step, default\)"):
        plot.interactive(draw, k=(1, 10))


def _draw_line(slope=1.0):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, slope])
    ax.set_ylim(-3, 3)
    plt.show()


def test_render_png_captures_the_figure_and_closes_it():
    open_before = plt.get_fignums()
    png = plot._render_png(_draw_line, {"slope": 2.0})
    assert png.startswith(b"\x89PNG")
    assert plt.get_fignums() == open_before
    assert plot._render_png(_draw_line, {"slope": -2.0}) != png
    with pytest.raises(ValueError, match="must draw a matplotlib figure"):
        plot._render_png(lambda: None, {})


def test_slider_box_reports_released_values_and_shows_full_labels():
    pytest.importorskip("ipywidgets")
    released = []
    box = plot._slider_box({"slope": (-2.0, 2.0, 0.5, 1.0), "k": (1, 9, 1, 3)}, released.append)
    slope, k = box.children
    assert (slope.description, slope.style.description_width) == ("slope", "initial")
    assert type(k).__name__ == "IntSlider" and not slope.continuous_update
    slope.value = -2.0
    assert released == [{"slope": -2.0, "k": 3}]


def test_widgets_not_used_outside_a_kernel(normal):
    assert plot.widgets_available() is False


def test_input_output_pairs_puts_each_output_right_of_its_input():
    x = torch.full((2, 3, 4, 5), -1.0)
    x_hat = torch.full((2, 3, 4, 5), 3.0)          # decoders overshoot; the pair clamps it
    pairs = plot.input_output_pairs(x, x_hat)
    assert pairs.shape == (2, 3, 4, 10)
    assert torch.all(pairs[..., :5] == -1.0) and torch.all(pairs[..., 5:] == 1.0)
    with pytest.raises(ValueError, match="same shape"):
        plot.input_output_pairs(x, x_hat[:, :, :2])
