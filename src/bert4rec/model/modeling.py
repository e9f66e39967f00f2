"""BERT4Rec: a HuggingFace ``BertModel`` encoder plus the BERT masked-LM head, scoring items only where asked.

Shapes: B batch, L sequence length (≤ max_len), H hidden size, N items, M positions to score.
Token ids: PAD = 0, items 1..N, MASK = N + 1 (see ``data/vocab.py``). Scores cover items only (N columns, column j is
token j + 1), so PAD and MASK can never be predicted or recommended.

Sequences are right-aligned (the most recent item last) and position ids count back from the end: the last slot is
always position max_len - 1. A batch padded to its own longest sequence therefore computes exactly what a batch
padded to max_len would, which is what makes length-bucketed batches safe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from bert4rec.data.item_features import YEAR_BUCKETS
from bert4rec.errors import Bert4RecError
from bert4rec.files import MODEL_CONFIG_FILE, WEIGHTS_FILE, atomic_write, verify_digests
from bert4rec.model.config import VERSION, Bert4RecConfig
from bert4rec.model.inputs import IGNORE
from bert4rec.model.losses import full_softmax, other_window_items

# (hidden (M, H), items (N, H), bias (N,), targets (M,), items left out of each softmax (M, N) | None) -> summed loss
ItemLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]



class BitsDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is cut from 64-bit random draws, 16 bits per element. PyTorch's CPU dropout
    draws one Bernoulli sample per element, a large share of a training step on a CPU; four elements per draw make
    the mask several times cheaper (benchmarks/train_step.py measures the step). Elsewhere, and outside training,
    it is ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        count = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, (-(-count // 4),), dtype=torch.int64)
        # Kept with probability 1 - p (to 1 / 65536): a uniform int16 at or above this threshold.
        keep = draws.view(torch.int16)[:count].view(x.shape) >= round(self.p * 65536) - 32768
        return x * (keep.to(x.dtype) * (1 / (1 - self.p)))


class Bert4Rec(nn.Module):
    def __init__(self, config: Bert4RecConfig):
        super().__init__()
        config.validate()
        self.config = config
        bert_config = BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attention_dropout,
            max_position_embeddings=config.max_len,
            type_vocab_size=config.num_token_types,
            pad_token_id=0,
        )
        bert_config._attn_implementation = "sdpa"
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        for module in list(self.bert.modules()):  # the attention reads only its dropout's p
            for name, child in module.named_children():
                if type(child) is nn.Dropout:
                    setattr(module, name, BitsDropout(child.p))
        # Masked-LM head: dense -> GELU -> LayerNorm, then scores against the (tied) item embeddings + a bias.
        self.head = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.GELU(),
                                  nn.LayerNorm(config.hidden_size, eps=bert_config.layer_norm_eps))
        self.item_bias = nn.Parameter(torch.zeros(config.num_items))
        nn.init.normal_(self.head[0].weight, std=bert_config.initializer_range)
        nn.init.zeros_(self.head[0].bias)
        # What the catalogue says of each token's movie (data/item_features.py): set by training from the data,
        # saved with the weights, so serving needs no catalogue to compute them. PAD and MASK have none.
        if config.genre_aware:
            if not config.genres:
                raise Bert4RecError("a genre-aware model needs its genre vocabulary (config.genres)")
            self.genre_embeddings = nn.Embedding(len(config.genres), config.hidden_size)
            self.register_buffer("item_genres", torch.zeros(config.vocab_size, len(config.genres)))
        if config.year_aware:
            self.year_embeddings = nn.Embedding(YEAR_BUCKETS, config.hidden_size)
            self.register_buffer("item_years", torch.zeros(config.vocab_size, dtype=torch.int64))
        for table in (getattr(self, "genre_embeddings", None), getattr(self, "year_embeddings", None)):
            if table is not None:
                nn.init.normal_(table.weight, std=bert_config.initializer_range)

    def set_item_features(self, genres: torch.Tensor | None, years: torch.Tensor | None) -> None:
        """The catalogue's features of the N items, in token order: (N, G) genre weights (``genre_weights``) and
        (N,) year buckets; each given exactly when the model reads it."""
        for name, given, reads in (("item_genres", genres, self.config.genre_aware),
                                   ("item_years", years, self.config.year_aware)):
            if (given is not None) != reads:
                raise Bert4RecError(f"{name}: given {given is not None}, but the model reads it: {reads}")
            if given is not None:
                getattr(self, name)[1 : self.config.num_items + 1] = given

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) right-aligned token ids -> (B, L, H) hidden states. ``table``: ``token_table()``, where the caller
        needs it too (computed once per pass)."""
        hidden, attend = self._embed(input_ids, token_type_ids, table)
        for layer in self.bert.encoder.layer:
            hidden = layer(hidden, attention_mask=attend)
        return hidden

    def encode_last(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                    table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) right-aligned token ids -> (B, H) hidden state of the last position, what scoring reads. The last
        layer's output at one position needs every position's keys and values but only that position's query,
        attention output and feed-forward, so those are computed for it alone."""
        hidden, attend = self._embed(input_ids, token_type_ids, table)
        *inner, last = self.bert.encoder.layer
        for layer in inner:
            hidden = layer(hidden, attention_mask=attend)
        attention = last.attention.self
        batch, length, _ = hidden.shape
        heads, head_size = attention.num_attention_heads, attention.attention_head_size
        tail = hidden[:, -1:]  # (B, 1, H)
        query = attention.query(tail).view(batch, 1, heads, head_size).transpose(1, 2)  # (B, heads, 1, d)
        key = attention.key(hidden).view(batch, length, heads, head_size).transpose(1, 2)  # (B, heads, L, d)
        value = attention.value(hidden).view(batch, length, heads, head_size).transpose(1, 2)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attend, scale=attention.scaling)
        context = context.transpose(1, 2).reshape(batch, 1, heads * head_size)
        mixed = last.attention.output(context, tail)  # (B, 1, H)
        return last.output(last.intermediate(mixed), mixed)[:, 0]

    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
               table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) token ids -> (B, L, H) embeddings and the (B, 1, 1, L) mask of the positions attention may read
        (not padding). The layers are called directly: ``BertModel.forward`` would build the same mask, at a cost
        that shows in serving's latency."""
        length = input_ids.shape[1]
        if length > self.config.max_len:
            raise Bert4RecError(f"sequence length {length} exceeds the model's max_len {self.config.max_len}")
        # Position max_len - 1 for the last column, counting back; built from tensor ops alone so that an ONNX
        # export keeps the length dynamic.
        from_end = torch.ones_like(input_ids).flip(1).cumsum(1).flip(1)  # (B, L): L, L-1, ..., 1
        if token_type_ids is not None:  # a model that reads no types has one type, 0, for every token
            token_type_ids = self.config.own_types(token_type_ids) if self.config.reads_types else None
        positions = self.config.max_len - from_end
        if self.config.reads_features:  # the same sums the output side scores with
            table = self.token_table() if table is None else table
            hidden = self.bert.embeddings(inputs_embeds=F.embedding(input_ids, table),
                                          token_type_ids=token_type_ids, position_ids=positions)
        else:
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=positions)
        return hidden, (input_ids != 0)[:, None, None, :]

    def token_table(self) -> torch.Tensor:
        """(PAD + N + MASK, H): each token's embedding, plus its movie's genre and year parts where read."""
        table = self.bert.embeddings.word_embeddings.weight
        if self.config.genre_aware:
            table = table + self.item_genres @ self.genre_embeddings.weight  # (V, G) @ (G, H)
        if self.config.year_aware:
            table = table + self.year_embeddings(self.item_years)
        return table

    def item_embeddings(self, table: torch.Tensor | None = None) -> torch.Tensor:
        """(N, H): the (tied) input embeddings of the items, PAD and MASK left out (rows of ``table``, if given)."""
        return (self.token_table() if table is None else table)[1 : self.config.num_items + 1]

    def item_scores(self, hidden: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(M, H) hidden states -> (M, N) item scores (logits); column j is item token j + 1."""
        return self.head(hidden) @ self.item_embeddings(table).T + self.item_bias

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                reduction: str = "mean", loss: ItemLoss = full_softmax, exclude_seen: bool = False) -> torch.Tensor:
        """Cloze loss over the masked positions only (labels != IGNORE), mean or sum. ``loss`` scores them against
        the catalogue: exact cross-entropy by default, or e.g. ``losses.SampledSoftmax``. With ``exclude_seen``
        each position's softmax leaves out the other items of its window, as evaluation leaves out the history."""
        table = self.token_table()  # (V, H), read on both sides
        hidden = self.encode(input_ids, token_type_ids, table)  # (B, L, H)
        where = labels != IGNORE  # (B, L)
        exclude = None
        if exclude_seen:
            exclude = other_window_items(torch.where(where, labels, input_ids), where, self.config.num_items)
        # Only masked positions are scored, never B × L × N; the loss bounds the M × N part.
        total = loss(self.head(hidden[where]), self.item_embeddings(table), self.item_bias, labels[where] - 1,
                     exclude)
        return total if reduction == "sum" else total / max(1, int(where.sum()))

    def score_last(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) sequences ending in [MASK] -> (B, N) scores for the item behind that last [MASK]."""
        table = self.token_table()
        return self.item_scores(self.encode_last(input_ids, token_type_ids, table), table)

    # ---------------------------------------------------------------------------------------- storage

    def save(self, folder: Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into an existing folder, each atomically."""
        folder = Path(folder)
        self.config.save(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        metadata = {"format": "bert4rec-model", "version": str(VERSION)}
        atomic_write(folder / WEIGHTS_FILE, lambda path: save_file(state, str(path), metadata=metadata), digest=True)

    @classmethod
    def load(cls, folder: Path, device: str | torch.device = "cpu") -> Bert4Rec:
        folder = Path(folder)
        verify_digests(folder, [MODEL_CONFIG_FILE, WEIGHTS_FILE])
        config = Bert4RecConfig.load(folder)
        model = cls(config)
        path = folder / WEIGHTS_FILE
        try:
            state = load_file(str(path), device=str(device))
        except FileNotFoundError:
            raise Bert4RecError(f"{path}: missing model weights") from None
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise Bert4RecError(f"{path}: corrupt or unreadable weights ({exc})") from None
        expected = model.state_dict()
        if set(state) != set(expected):
            missing = sorted(set(expected) - set(state))[:3]
            raise Bert4RecError(f"{path}: weights do not match config.json (missing or extra tensors, e.g. {missing})")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise Bert4RecError(f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies "
                                    f"{tuple(expected[name].shape)}")
        model.load_state_dict(state)
        return model.to(device)
