"""Stage 2 of VQGAN: a GPT-style transformer prior over code indices (lecture section 10).

A trained VQ model turns an image into an ``(h, w)`` grid of integers in ``[0, num_codes)``.
Read row by row, the grid is a sentence over a vocabulary of ``num_codes`` words, and a
decoder-only transformer learns ``p(c_t | c_<t)`` with plain next-token cross-entropy.
Sampling a new sentence code by code and decoding it with the VQ model gives a new image.

Two mistakes of the lecture's listing (docs/ERRATA.md, B6) are avoided on purpose:

* the start token is ``num_codes``, one past the last code, so it can never be confused
  with a real code (the lecture's start/end tokens 66/67 were valid code indices);
* attention goes through ``F.scaled_dot_product_attention``, which scales by ``1/sqrt(d)``
  *before* the softmax, and the model has learned positional embeddings.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import records_hparams
from .data import images_of
from .evaluate import evaluating
from .optim import make_optimizer, trainable


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position ``t`` only sees positions ``<= t``
    (``causal=False``: every position sees every other, as MaskGIT's prior needs)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={n_embd}, n_head={n_head}")
        self.n_head = n_head
        self.causal = causal
        self.qkv = nn.Linear(n_embd, 3 * n_embd)  # queries, keys and values in one matmul
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C). With ``cache`` (a list, empty at first), x is the next
        position only (T = 1): its keys and values are appended to the cached ones, and it
        attends to all of them, so sampling computes each position once."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim): every head attends independently.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if not self.causal:
                raise ValueError("a key/value cache needs causal attention: every position of a "
                                 "bidirectional model changes when a later one does")
            if T != 1:
                raise ValueError(f"with a cache, give one position at a time, got {T}")
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        # softmax(q k^T / sqrt(d) + causal mask) v, scaled before the softmax, fused by torch.
        # One new position may see every cached one: no mask then.
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal and cache is None, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, causal: bool = True):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, causal)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the nucleus of mass top_p.

    logits: (..., V). ``top_k=1`` keeps only the argmax (greedy decoding); the most likely
    token always survives the top-p cut, so at least one token stays possible.
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k}")
        # Scatter the k best back into a field of -inf (exactly k survive, even with ties).
        best = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, best.indices, best.values)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p is not None and top_p < 1.0:  # top_p = 1 keeps everything
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the mass of the tokens ranked before it already reaches top_p.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class TransformerPrior(nn.Module):
    """Decoder-only transformer over the flattened ``(h, w)`` code grid of a VQ model.

    Inputs are tokens in ``[0, num_codes]`` (``num_codes`` is the start token), outputs are
    logits over the ``num_codes`` real codes: the model never predicts the start token.

    Args:
        num_codes: K, the VQ model's codebook size
        latent_shape: (h, w) of the code grid
        n_layers: transformer blocks (``n_layers`` like the PixelCNN's; minGPT calls it n_layer)
        n_head: attention heads
        n_embd: embedding width
        dropout: dropout rate in training
    """

    causal = True  # each position sees only the ones before it (MaskedPrior: False)

    @records_hparams
    def __init__(self, num_codes: int, latent_shape: tuple[int, int] | list[int] = (8, 8),
                 n_layers: int = 4, n_head: int = 4, n_embd: int = 128, dropout: float = 0.1):
        super().__init__()
        if num_codes < 2:
            raise ValueError(f"num_codes must be at least 2, got {num_codes}")
        if len(latent_shape) != 2 or min(latent_shape) < 1:
            raise ValueError(f"latent_shape must be (h, w) with positive sizes, got {latent_shape}")
        self.num_codes = int(num_codes)
        self.latent_shape = (int(latent_shape[0]), int(latent_shape[1]))
        self.block_size = self.latent_shape[0] * self.latent_shape[1]
        self.start_token = self.num_codes  # one past the last code: never a real code index

        self.tok_emb = nn.Embedding(self.num_codes + 1, n_embd)
        self.pos_emb = nn.Embedding(self.block_size, n_embd)  # learned positions
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(n_embd, n_head, dropout, self.causal) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, self.num_codes, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layers) so that the sum of
        # many residual branches keeps unit variance at initialisation.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def upgrade_hparams(hparams: dict) -> dict:
        """Constructor arguments of a checkpoint written when the depth was ``n_layer``."""
        if "n_layer" not in hparams:
            return hparams
        hparams = dict(hparams)
        hparams["n_layers"] = hparams.pop("n_layer")
        return hparams

    def configure_optimizers(self, config) -> list[torch.optim.Optimizer]:
        """AdamW, as in minGPT and nanoGPT (unless the run names another optimizer), with
        minGPT's two groups: weight decay on the weight matrices of the linear layers only;
        biases, LayerNorm gains and the embeddings are not pulled towards zero."""
        decay = [p for m in self.modules() if isinstance(m, nn.Linear)
                 for name, p in m.named_parameters(recurse=False) if name == "weight"]
        chosen = {id(p) for p in decay}
        params = trainable(self.parameters())
        groups = [{"params": [p for p in params if id(p) in chosen]},
                  {"params": [p for p in params if id(p) not in chosen], "weight_decay": 0.0}]
        return [make_optimizer(config.optimizer or "adamw", groups,
                               lr=config.lr, weight_decay=config.weight_decay,
                               betas=config.betas, momentum=config.momentum)]

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, T) long in [0, num_codes], T <= h*w -> logits (B, T, num_codes)."""
        if tokens.dim() != 2:
            raise ValueError(f"expected tokens of shape (B, T), got {tuple(tokens.shape)}")
        T = tokens.size(1)
        if not 1 <= T <= self.block_size:
            raise ValueError(f"sequence length must be in [1, {self.block_size}], got {T}")
        pos = torch.arange(T, device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        expected = (-1, *self.latent_shape)
        if indices.dim() != 3 or tuple(indices.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected code indices of shape (B, {expected[1]}, {expected[2]}), "
                             f"got {tuple(indices.shape)}")
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"expected integer code indices, got dtype {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"code indices must lie in [0, {self.num_codes}), got values in "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return indices.long()

    def compute_loss(self, indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Next-code cross-entropy on indices (B, h, w). Returns (loss, logs).

        The input is the start token followed by all codes but the last; the target is
        all codes, so position t predicts code t from codes 0..t-1.
        logs: "ce" (nats per code), "bits_per_code", "accuracy" (next-code argmax hits).
        """
        targets = self._check_indices(indices).flatten(1)  # (B, L), raster order
        start = torch.full_like(targets[:, :1], self.start_token)
        logits = self(torch.cat([start, targets[:, :-1]], dim=1))  # (B, L, K)
        loss = F.cross_entropy(logits.reshape(-1, self.num_codes), targets.reshape(-1))
        with torch.no_grad():
            acc = (logits.argmax(-1) == targets).float().mean()
        logs = {"ce": loss.detach(), "bits_per_code": loss.detach() / math.log(2), "accuracy": acc}
        return loss, logs

    def _sampling_generator(self, n: int, temperature: float, generator: torch.Generator | None,
                            seed: int | None) -> torch.Generator | None:
        """Check the arguments every sampler shares; the generator to draw with (None: the
        global RNG)."""
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy choices), got {temperature}")
        if generator is not None and seed is not None:
            raise ValueError("pass either generator or seed, not both")
        if seed is not None:
            generator = torch.Generator(device=self.head.weight.device).manual_seed(int(seed))
        return generator

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None,
               seed: int | None = None) -> torch.Tensor:
        """Draw n code grids autoregressively -> (n, h, w) long.

        ``seed`` (or a ``torch.Generator`` on the model's device) makes the draw repeat
        exactly; neither means the global torch RNG is used. ``top_k=1`` is greedy decoding.
        """
        generator = self._sampling_generator(n, temperature, generator, seed)
        device = self.head.weight.device
        with evaluating(self):  # no dropout while sampling
            nxt = torch.full((n, 1), self.start_token, dtype=torch.long, device=device)
            # A key/value cache per block: each step feeds only the newest token, which
            # attends to the cached prefix (the same logits as the full forward, h*w times
            # fewer positions computed per step).
            caches, codes = [[] for _ in self.blocks], []
            for t in range(self.block_size):
                x = self.tok_emb(nxt) + self.pos_emb.weight[t]
                for block, cache in zip(self.blocks, caches):
                    x = block(x, cache)
                logits = self.head(self.ln_f(x))[:, -1, :] / temperature
                probs = filter_logits(logits, top_k, top_p).softmax(dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
                codes.append(nxt)
        return torch.cat(codes, dim=1).reshape(n, *self.latent_shape)


@torch.no_grad()
def encode_dataset(vq_model: nn.Module, dataset, batch_size: int = 64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Encode every image of ``dataset`` (items ``(image, target)``) -> (N, h, w) long on CPU."""
    device = torch.device(device) if device is not None else next(vq_model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with evaluating(vq_model):
        chunks = [vq_model.encode_to_indices(images_of(batch).to(device)).cpu() for batch in loader]
    if not chunks:
        raise ValueError("the dataset is empty: there is nothing to encode")
    return torch.cat(chunks).long()


@torch.no_grad()
def decode_samples(vq_model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
    """Turn code grids (n, h, w) into images (n, C, H, W) in [-1, 1] with the VQ decoder."""
    with evaluating(vq_model):
        device = next(vq_model.parameters()).device
        return vq_model.decode_indices(indices.to(device)).clamp(-1, 1)


def sample_images(prior: TransformerPrior, vq_model: nn.Module, n: int, **sample_kwargs) -> torch.Tensor:
    """Sample n code grids from the prior and decode them -> (n, C, H, W) in [-1, 1].

    ``sample_kwargs`` go to ``TransformerPrior.sample`` (temperature, top_k, top_p, seed, ...).
    """
    if prior.num_codes != vq_model.num_codes:
        raise ValueError(f"the prior was trained for {prior.num_codes} codes but the VQ model "
                         f"has {vq_model.num_codes}")
    return decode_samples(vq_model, prior.sample(n, **sample_kwargs))


def load_prior(path, device: torch.device | str = "cpu") -> TransformerPrior:
    """Rebuild a prior from a checkpoint written by ``dlstudio-lite train prior``, in eval mode."""
    from .checkpoint import load_model
    return as_prior(load_model(path, device), path)


def as_prior(model, path) -> TransformerPrior:
    """``model`` (loaded from ``path``) if it is a transformer prior, else a ``CheckpointError``."""
    from .checkpoint import CheckpointError
    if not isinstance(model, TransformerPrior):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(model).__name__}, "
                              f"expected a transformer prior (written by `train prior` or `train maskgit`)")
    return model
