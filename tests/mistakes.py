"""The mistake catalogue: plausible wrong answers to every exercise question.

Each entry edits the solution notebook (``old`` -> ``new`` in the question's code cell).
Questions are scored independently, so notebook ``k`` of an exercise carries mistake ``k``
of *every* question at once (:func:`mistake_notebook`): a handful of notebooks per
exercise grade the whole catalogue in the one sandboxed batch of
``tests/test_grading_attacks.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]

# question id -> (exercise, [(mistake, [(old, new), ...]), ...])
MISTAKES: dict[str, tuple[str, list[tuple[str, list[tuple[str, str]]]]]] = {
    "nearest_code": ("ex01_codebook", [
        ("argmax for argmin", [("torch.cdist(flat, codebook).argmin(dim=1)", "torch.cdist(flat, codebook).argmax(dim=1)")]),
        ("flattens BCHW without moving channels last", [("flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)", "flat = z_e.reshape(-1, D)")]),
        ("z_q reshaped to BCHW without permuting back",
         [("z_q = codebook[indices].reshape(B, h, w, D).permute(0, 3, 1, 2)", "z_q = codebook[indices].reshape(B, D, h, w)")]),
        (".squeeze() loses a batch of one", [("return indices.reshape(B, h, w), z_q", "return indices.reshape(B, h, w).squeeze(), z_q")]),
    ]),
    "perplexity": ("ex01_codebook", [
        ("divides by the batch size", [("probs = counts / counts.sum()", "probs = counts / indices.shape[0]")]),
        ("0 * log 0 gives NaN", [("entropy = -torch.special.xlogy(probs, probs).sum()", "entropy = -(probs * probs.log()).sum()")]),
        ("returns the entropy, not its exponential", [("return torch.exp(entropy)", "return entropy")]),
        ("log base 2 with exp", [("entropy = -torch.special.xlogy(probs, probs).sum()",
                                  "entropy = -(probs * torch.log2(probs.clamp_min(1e-12))).sum()")]),
    ]),
    "kl_closed_form": ("ex02_elbo", [
        ("KL direction swapped", [("terms = logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0",
                                   "terms = logvar_q - logvar_p + (var_p + (mu_q - mu_p) ** 2) / var_q - 1.0")]),
        ("missing the factor 1/2", [("return 0.5 * terms.sum(dim=-1)", "return terms.sum(dim=-1)")]),
        ("mean over latent dimensions instead of sum", [("return 0.5 * terms.sum(dim=-1)", "return 0.5 * terms.mean(dim=-1)")]),
        ("logvar used as a log standard deviation",
         [("var_q, var_p = logvar_q.exp(), logvar_p.exp()", "var_q, var_p = (2 * logvar_q).exp(), (2 * logvar_p).exp()")]),
    ]),
    "kl_monte_carlo": ("ex02_elbo", [
        ("exp(logvar) used as the standard deviation", [("z = mu_q + torch.exp(0.5 * logvar_q) * eps", "z = mu_q + torch.exp(logvar_q) * eps")]),
        ("ignores the generator", [("eps = torch.randn(num_samples, *mu_q.shape, generator=generator)",
                                    "eps = torch.randn(num_samples, *mu_q.shape)")]),
        ("sum over samples instead of mean", [(".mean(dim=0)", ".sum(dim=0)")]),
        ("log p - log q (sign)", [("(log_normal(z, mu_q, logvar_q) - log_normal(z, mu_p, logvar_p))",
                                   "(log_normal(z, mu_p, logvar_p) - log_normal(z, mu_q, logvar_q))")]),
    ]),
    "conv_output_size": ("ex03_autoencoder", [
        ("missing + 1", [("return (size + 2 * padding - kernel_size) // stride + 1", "return (size + 2 * padding - kernel_size) // stride")]),
        ("true division gives a float", [("return (size + 2 * padding - kernel_size) // stride + 1",
                                          "return (size + 2 * padding - kernel_size) / stride + 1")]),
        ("padding on one side only", [("return (size + 2 * padding - kernel_size) // stride + 1",
                                       "return (size + padding - kernel_size) // stride + 1")]),
        ("halves the side with // 2: wrong for odd sides", [("side = conv_output_size(side, 1, 2, 0)", "side = side // 2")]),
    ]),
    "skip_block": ("ex03_autoencoder", [
        ("no shortcut", [("return out + identity", "return out")]),
        ("second ReLU missing", [("out = F.relu(self.norm2(self.conv2(out)))", "out = self.norm2(self.conv2(out))")]),
        ("ReLU after the addition", [("out = F.relu(self.norm2(self.conv2(out)))", "out = self.norm2(self.conv2(out))"),
                                     ("return out + identity", "return F.relu(out + identity)")]),
        ("channels repeated instead of concatenated", [("torch.cat([identity, identity], dim=1)", "identity.repeat_interleave(2, dim=1)")]),
    ]),
    "reparameterize": ("ex04_vae", [
        ("exp(logvar) used as the standard deviation", [("return mu + torch.exp(0.5 * logvar) * eps", "return mu + torch.exp(logvar) * eps")]),
        ("ignores the generator", [("eps = torch.randn(mu.shape, generator=generator)", "eps = torch.randn_like(mu)")]),
        ("logvar used as the standard deviation", [("return mu + torch.exp(0.5 * logvar) * eps", "return mu + logvar * eps")]),
        ("no gradient to logvar", [("return mu + torch.exp(0.5 * logvar) * eps", "return mu + torch.exp(0.5 * logvar.detach()) * eps")]),
    ]),
    "vae_loss": ("ex04_vae", [
        ("KL with the wrong sign", [("kl = -0.5 * torch.sum(", "kl = 0.5 * torch.sum(")]),
        ("mean over pixels instead of sum", [('recon = F.mse_loss(x_hat, x, reduction="sum") / B', "recon = F.mse_loss(x_hat, x)")]),
        ("kl_weight on the wrong term", [("return recon + kl_weight * kl, recon, kl", "return kl_weight * recon + kl, recon, kl")]),
        ("logvar used as a log standard deviation", [("1 + logvar - mu**2 - logvar.exp()", "1 + 2 * logvar - mu**2 - (2 * logvar).exp()")]),
    ]),
    "vq_losses": ("ex05_vqvae", [
        ("no stop-gradient on the codebook loss", [("codebook_loss = F.mse_loss(z_q, z_e.detach())", "codebook_loss = F.mse_loss(z_q, z_e)")]),
        ("beta on the codebook term", [("return codebook_loss, commitment_loss, codebook_loss + beta * commitment_loss",
                                        "return codebook_loss, commitment_loss, beta * codebook_loss + commitment_loss")]),
        ("detaches swapped", [("codebook_loss = F.mse_loss(z_q, z_e.detach())", "codebook_loss = F.mse_loss(z_q.detach(), z_e)"),
                              ("commitment_loss = F.mse_loss(z_e, z_q.detach())", "commitment_loss = F.mse_loss(z_e.detach(), z_q)")]),
        ("total (1 + beta) * mse without stop-gradients",
         [("return codebook_loss, commitment_loss, codebook_loss + beta * commitment_loss",
           "return codebook_loss, commitment_loss, (1 + beta) * F.mse_loss(z_e, z_q)")]),
    ]),
    "straight_through": ("ex05_vqvae", [
        ("no detach", [("return z_e + (z_q - z_e).detach()", "return z_e + (z_q - z_e)")]),
        ("returns z_q", [("return z_e + (z_q - z_e).detach()", "return z_q")]),
        ("the wrong way round", [("return z_e + (z_q - z_e).detach()", "return z_q + (z_e - z_q).detach()")]),
        ("detach on the wrong term", [("return z_e + (z_q - z_e).detach()", "return z_e.detach() + (z_q - z_e)")]),
    ]),
    "fix_quantizer": ("ex05_vqvae", [
        ("argmax kept", [("indices = distances.argmin(dim=1)", "indices = distances.argmax(dim=1)")]),
        ("flattening bug kept", [("flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)", "flat = z_e.reshape(-1, D)")]),
        ("no straight-through", [("permute(0, 3, 1, 2)\n    loss = F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())\n    z_q = z_e + (z_q - z_e).detach()",
                                  "permute(0, 3, 1, 2)\n    loss = F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())")]),
        ("beta on the codebook term", [("permute(0, 3, 1, 2)\n    loss = F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())",
                                        "permute(0, 3, 1, 2)\n    loss = beta * F.mse_loss(z_q, z_e.detach()) + F.mse_loss(z_e, z_q.detach())")]),
    ]),
    "known_answer": ("ex05_vqvae", [
        ("reshape without transposing", [("return codebook.t().reshape(1, D, 1, K)", "return codebook.reshape(1, D, 1, K)")]),
        ("codes along the channel axis", [("return codebook.t().reshape(1, D, 1, K)", "return codebook.reshape(1, K, 1, D)")]),
        ("a K x 1 grid instead of 1 x K", [("return codebook.t().reshape(1, D, 1, K)", "return codebook.t().reshape(1, D, K, 1)")]),
        ("no batch dimension", [("return codebook.t().reshape(1, D, 1, K)", "return codebook.t().unsqueeze(1)")]),
    ]),
    "adaptive_lambda": ("ex06_vqgan", [
        ("graph freed (no retain_graph)", [("rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]",
                                            "rec_grad = torch.autograd.grad(rec_loss, last_layer_weight)[0]")]),
        (".backward() and .grad", [("rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]\n"
                                    "    gan_grad = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)[0]",
                                    "rec_loss.backward(retain_graph=True)\n    rec_grad = last_layer_weight.grad.clone()\n"
                                    "    last_layer_weight.grad = None\n    gan_loss.backward(retain_graph=True)\n"
                                    "    gan_grad = last_layer_weight.grad.clone()\n    last_layer_weight.grad = None")]),
        ("missing clamp", [("return lam.clamp(0.0, max_value).detach()", "return lam.detach()")]),
        ("ratio inverted", [("lam = rec_grad.norm() / (gan_grad.norm() + delta)", "lam = gan_grad.norm() / (rec_grad.norm() + delta)")]),
    ]),
    "hinge_losses": ("ex06_vqgan", [
        ("sign of the fake term", [("F.relu(1.0 + logits_fake)", "F.relu(1.0 - logits_fake)")]),
        ("no hinge (missing relu)", [("F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()",
                                      "(1.0 - logits_real).mean() + (1.0 + logits_fake).mean()")]),
        ("missing the factor 1/2", [("return 0.5 * (F.relu", "return (F.relu")]),
        ("generator loss with the wrong sign", [("return -logits_fake.mean()", "return logits_fake.mean()")]),
    ]),
    "top_k_sampling": ("ex06_vqgan", [
        ("multiplies by the temperature", [("logits = logits / temperature", "logits = logits * temperature")]),
        (".squeeze() loses a batch of one", [("generator=generator).squeeze(1)", "generator=generator).squeeze()")]),
        ("ignores the generator", [("torch.multinomial(probs, 1, generator=generator)", "torch.multinomial(probs, 1)")]),
        ("keeps only the largest logit", [("torch.topk(logits, k, dim=-1).values[:, -1:]", "torch.topk(logits, k, dim=-1).values[:, :1]")]),
        # Scored 8/8 before issue 27: on all-zero logits topk's tie order permuted the draws.
        ("samples among the top k values but ignores the generator",
         [("kth = torch.topk(logits, k, dim=-1).values[:, -1:]             # (B, 1): the k-th largest\n"
           "    logits = logits.masked_fill(logits < kth, float(\"-inf\"))\n"
           "    probs = F.softmax(logits, dim=-1)\n"
           "    return torch.multinomial(probs, 1, generator=generator).squeeze(1)",
           "values, indices = torch.topk(logits, k, dim=-1)\n"
           "    choice = torch.multinomial(F.softmax(values, dim=-1), 1)\n"
           "    return indices.gather(1, choice).squeeze(1)")]),
    ]),
    "causal_mask": ("ex09_pixelcnn", [
        ("types A and B swapped", [('if mask_type == "B":', 'if mask_type == "A":')]),
        ("off by one row: the centre row fully open", [("mask[:c, :] = 1.0", "mask[:c + 1, :] = 1.0")]),
        ("column order (the mask transposed)", [("mask[:c, :] = 1.0", "mask[:, :c] = 1.0"), ("mask[c, :c] = 1.0", "mask[:c, c] = 1.0")]),
        ("rows above only up to the centre column", [("mask[:c, :] = 1.0", "mask[:c, :c + 1] = 1.0")]),
    ]),
    "masked_conv2d": ("ex09_pixelcnn", [
        ("no padding", [("return F.conv2d(x, weight * mask, bias, padding=k // 2)", "return F.conv2d(x, weight * mask, bias)")]),
        ("masks the weights in place through .data", [("return F.conv2d(x, weight * mask, bias, padding=k // 2)",
                                                       "weight.data.mul_(mask)\n    return F.conv2d(x, weight, bias, padding=k // 2)")]),
        ("mask flipped (as if conv2d flipped the kernel)", [("return F.conv2d(x, weight * mask, bias, padding=k // 2)",
                                                            "return F.conv2d(x, weight * mask.flip(0, 1), bias, padding=k // 2)")]),
        ("bias ignored", [("return F.conv2d(x, weight * mask, bias, padding=k // 2)", "return F.conv2d(x, weight * mask, padding=k // 2)")]),
    ]),
    "receptive_field": ("ex09_pixelcnn", [
        ("forward from a one-hot input: the outputs it reaches, not the inputs it reads",
         [("x = torch.ones(1, 1, H, W, requires_grad=True)", "x = torch.zeros(1, 1, H, W)\n    x[0, 0, position[0], position[1]] = 1.0"),
          ("h[0, 0, row, col].backward()               # one output position: d out[row, col] / d x\n    return x.grad[0, 0] != 0",
           "return h[0, 0] != 0")]),
        ("gradient of the whole output's sum", [("h[0, 0, row, col].backward()", "h.sum().backward()")]),
        ("position read as (x, y)", [("row, col = position\n    h[0, 0, row, col]", "col, row = position\n    h[0, 0, row, col]")]),
        ("random kernels with a ReLU: dead units hide part of the field",
         [("h = F.conv2d(h, mask.reshape(1, 1, k, k), padding=k // 2)",
           "h = F.relu(F.conv2d(h, torch.randn(1, 1, k, k) * mask, padding=k // 2))")]),
    ]),
    "blind_spot": ("ex09_pixelcnn", [
        ("the position itself counted as earlier", [("((rows == row) & (cols < col))       # earlier", "((rows == row) & (cols <= col))       # earlier")]),
        ("column-major order", [("before = (rows < row) | ((rows == row) & (cols < col))       # earlier",
                                 "before = (cols < col) | ((cols == col) & (rows < row))       # earlier")]),
        ("full_field ignored: beyond the reach counted as blind", [("return before & full_field & ~field", "return before & ~field")]),
        ("raster order ignored: later positions counted as blind", [("return before & full_field & ~field", "return full_field & ~field")]),
    ]),
    "fsq_bound": ("ex10_fsq", [
        ("no half-step offset for even levels", [("offset = torch.where(L % 2 == 0, 0.5, 0.0)", "offset = torch.zeros_like(L)")]),
        ("offset without the shift: z = 0 lands on -1/2", [("shift = torch.atanh(offset / half_l)", "shift = torch.zeros_like(L)")]),
        ("clamp instead of tanh", [("return torch.tanh(z + shift) * half_l - offset", "return torch.clamp(z + shift, -1, 1) * half_l - offset")]),
        ("levels instead of levels - 1 in the half-width", [("half_l = (L - 1) * (1 + eps) / 2", "half_l = L * (1 + eps) / 2")]),
        ("the offset on odd levels instead of even", [("torch.where(L % 2 == 0, 0.5, 0.0)", "torch.where(L % 2 == 1, 0.5, 0.0)")]),
        ("shift subtracted", [("return torch.tanh(z + shift) * half_l - offset", "return torch.tanh(z - shift) * half_l - offset")]),
    ]),
    "fsq_round": ("ex10_fsq", [
        ("round without straight-through: the gradient through round is zero",
         [("rounded = bounded + (bounded.round() - bounded).detach()", "rounded = bounded.round()")]),
        ("straight-through the wrong way round: the value is not rounded",
         [("rounded = bounded + (bounded.round() - bounded).detach()", "rounded = bounded.round() + (bounded - bounded.round()).detach()")]),
        ("(L - 1) / 2 instead of L // 2", [("half_width = torch.tensor(levels) // 2", "half_width = (torch.tensor(levels) - 1) / 2")]),
        ("scaled to [-1, 1] before rounding",
         [("rounded = bounded + (bounded.round() - bounded).detach()      # value: rounded; gradient: identity\n    return rounded / half_width",
           "scaled = bounded / half_width\n    return scaled + (scaled.round() - scaled).detach()")]),
        ("straight-through around the division too: the gradient is not divided by L // 2",
         [("return rounded / half_width", "return bounded + (bounded.round() / half_width - bounded).detach()")]),
        ("not rescaled to [-1, 1]", [("return rounded / half_width", "return rounded")]),
    ]),
    "code_to_index": ("ex10_fsq", [
        ("codebook size as the sum of the levels", [("return math.prod(levels)", "return sum(levels)")]),
        ("the first channel the most significant (radix order reversed)",
         [("torch.cat([torch.ones(1, dtype=torch.long), L[:-1]]), dim=0)",
           "torch.cat([torch.ones(1, dtype=torch.long), L.flip(0)[:-1]]), dim=0).flip(0)")]),
        ("digits not shifted to 0 .. L - 1", [(".round().long() + L // 2", ".round().long()")]),
        ("place values from levels - 1", [("torch.cat([torch.ones(1, dtype=torch.long), L[:-1]]), dim=0)",
                                           "torch.cat([torch.ones(1, dtype=torch.long), L[:-1] - 1]), dim=0)")]),
        ("codebook size as the product of levels - 1", [("return math.prod(levels)", "return math.prod(v - 1 for v in levels)")]),
        ("a float index (no .long())", [(".round().long() + L // 2", ".round() + L // 2")]),
    ]),
    "index_to_code": ("ex10_fsq", [
        ("no modulo: the digits overflow", [("digits = (indices[..., None] // place) % L", "digits = indices[..., None] // place")]),
        ("radix order reversed", [("math.prod(levels[:i])", "math.prod(levels[i + 1:])")]),
        ("not rescaled to [-1, 1]", [("return (digits - L // 2).float() / (L // 2)", "return (digits - L // 2).float()")]),
        ("off by one: the digit centred on (L - 1) // 2", [("return (digits - L // 2).float() / (L // 2)",
                                                            "return (digits - (L - 1) // 2).float() / (L // 2)")]),
        ("the symmetric grid: digits scaled by (L - 1) / 2", [("return (digits - L // 2).float() / (L // 2)",
                                                               "return digits.float() / ((L - 1) / 2) - 1")]),
        ("integer division: integer codes", [("return (digits - L // 2).float() / (L // 2)", "return (digits - L // 2) // (L // 2)")]),
    ]),
}


def exercises() -> list[str]:
    return sorted({ex for ex, _ in MISTAKES.values()})


def count(exercise: str) -> int:
    """How many mistake notebooks ``exercise`` needs: the longest list among its questions."""
    return max(len(m) for ex, m in MISTAKES.values() if ex == exercise)


def mistake_notebook(exercise: str, k: int) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """The solution of ``exercise`` with mistake ``k`` of every question: (notebook, {question: mistake})."""
    nb = nbformat.read(REPO_ROOT / "solutions" / f"{exercise}.ipynb", as_version=4)
    applied = {}
    for qid, (ex, mistakes) in MISTAKES.items():
        if ex != exercise or k >= len(mistakes):
            continue
        name, edits = mistakes[k]
        for old, new in edits:
            hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
            assert len(hits) == 1, f"{qid} / {name}: {old!r} must occur in exactly one cell, found {len(hits)}"
            hits[0].source = hits[0].source.replace(old, new, 1)
        applied[qid] = name
    return nb, applied


def definition_cells(exercise: str) -> list[int]:
    """Indices (among code cells) of the cells that define things: not a check, not a demo."""
    import jupytext

    source = jupytext.read(REPO_ROOT / "instructor" / "source" / f"{exercise}.py")
    code = [c for c in source.cells if c.cell_type == "code" and "hidden-tests" not in c.metadata.get("tags", [])]
    return [i for i, c in enumerate(code) if not {"check", "uses-answers"} & set(c.metadata.get("tags", []))]


def definitions(exercise: str, nb: nbformat.NotebookNode) -> dict:
    """The namespace of ``nb``'s defining cells, run here (our own notebooks only: no sandbox)."""
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns: dict = {"__name__": f"mistakes_{exercise}"}
    for i in definition_cells(exercise):
        exec(compile(code[i], f"<{exercise} cell {i}>", "exec"), ns)
    return ns


def check_cells(exercise: str) -> dict[str, int]:
    """Question id -> index (among code cells) of its visible check cell: the i-th check cell is question i's."""
    import jupytext

    source = jupytext.read(REPO_ROOT / "instructor" / "source" / f"{exercise}.py")
    code = [c for c in source.cells if c.cell_type == "code" and "hidden-tests" not in c.metadata.get("tags", [])]
    checks = [i for i, c in enumerate(code) if "check" in c.metadata.get("tags", [])]
    ids = [q["id"] for q in json.loads((REPO_ROOT / "instructor" / "hidden_tests" / f"{exercise}.json").read_text())["questions"]]
    assert len(checks) == len(ids), f"{exercise}: {len(checks)} check cells for {len(ids)} questions"
    return dict(zip(ids, checks))
