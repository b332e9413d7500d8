"""HtFLlib's text models (its HtFE-txt families), with its head replacement.

Written from HtFLlib's ``system/flcore/trainmodel/models.py`` (``fastText``,
``TextLogisticRegression``, ``LSTMNet``, ``GRUNet``), ``bilstm.py``
(``BiLSTM_TextClassification``) and ``transformer.py`` (``TransformerModel``), layer by layer.
``BaseHeadSplit`` replaces each model's ``fc`` by ``nn.AdaptiveAvgPool1d(feature_dim)`` and
puts ``Linear(feature_dim, num_classes)`` after the model; the hidden width of every member is
``feature_dim`` (``hidden_dim=args.feature_dim``), so the pool is the identity. What the
original ``forward`` does *after* ``fc`` stays: fastText, TextLogisticRegression, LSTMNet and
GRUNet end in ``log_softmax``, which therefore applies to the features HtFLlib's methods see
(prototypes included); so it does here.

Input: a batch of token ids ``[B, L]`` (every sequence its full length; HtFLlib's lengths are
all ``L`` for a tensor input). Float ids (shards are stored as float32) are rounded to int64.
The vocabulary size is not in a sample's shape: the constructors take ``vocab_size`` (HtFLlib's
``--vocab_size``; 32000 for AG_News and SogouNews); htfl has no text dataset yet, so nothing
passes another value from an experiment.

Differences: HtFLlib's BiLSTM puts its initial state on ``cuda`` unconditionally (it cannot run
on a CPU); here the state is zeros on the input's device. LSTMNet/GRUNet pack their input with
full lengths, which is the same as running the recurrent layer on the padded batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from htfl.models.base import IncompatibleInputError, SplitModel, check_feature_dim

__all__ = ["DEFAULT_VOCAB_SIZE", "TEXT_ARCHITECTURES", "token_shape"]

#: HtFLlib's vocabulary for AG_News and SogouNews (its main.py's help text)
DEFAULT_VOCAB_SIZE = 32000
#: HtFLlib's ``--max_len`` default: the length of a text sample and of the positional table
DEFAULT_MAX_LEN = 200


def token_shape(arch: str, input_shape: tuple[int, ...]) -> int:
    """Validate a per-sample token-sequence shape ``(L,)`` and return ``L``."""
    shape = tuple(input_shape)
    if len(shape) != 1 or int(shape[0]) < 1:
        raise IncompatibleInputError(
            arch, shape, "expects a sequence of token ids, shape (length,)"
        )
    return int(shape[0])


def _tokens(x: Tensor) -> Tensor:
    return x if not x.is_floating_point() else x.round().long()


class FastTextFeatures(nn.Module):
    """Mean of the embeddings, ``fc1``, then (HtFLlib) log_softmax."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.fc1 = nn.Linear(dim, dim)
        self.fc = nn.AdaptiveAvgPool1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.fc(self.fc1(self.embedding(_tokens(x)).mean(1))), dim=1)


class TextLogisticRegressionFeatures(nn.Module):
    """Mean of the embeddings, then (HtFLlib) log_softmax."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.fc = nn.AdaptiveAvgPool1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.fc(self.embedding(_tokens(x)).mean(dim=1)), dim=1)


class RNNFeatures(nn.Module):
    """HtFLlib's LSTMNet / GRUNet: 2 layers, dropout 0.2, then (HtFLlib) log_softmax.

    LSTMNet takes the last time step of the output, through ReLU; GRUNet the last layer's final
    hidden state (the same vector for a unidirectional GRU), without ReLU.
    """

    def __init__(self, kind: str, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.kind = kind
        self.dropout = nn.Dropout(0.2)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        rnn = nn.LSTM if kind == "lstm" else nn.GRU
        setattr(self, kind, rnn(dim, dim, num_layers=2, dropout=0.2, batch_first=True))
        self.fc = nn.AdaptiveAvgPool1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = getattr(self, self.kind)(self.embedding(_tokens(x)))
        last = out[:, -1, :]
        if self.kind == "lstm":
            last = torch.relu(last)
        return F.log_softmax(self.fc(self.dropout(last)), dim=1)


class BiLSTMFeatures(nn.Module):
    """HtFLlib's BiLSTM_TextClassification (one layer, no attention, dropouts 0): the last
    step of the bidirectional output, ``fc1`` (2h -> h)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.hidden_size = dim
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.embedding_dropout_layer = nn.Dropout(0.0)
        self.lstm_layer = nn.LSTM(dim, dim, 1, dropout=0.0, bidirectional=True)
        self.lstm_dropout_layer = nn.Dropout(0.0)
        self.fc1 = nn.Linear(2 * dim, dim)
        self.fc = nn.AdaptiveAvgPool1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        seq = self.embedding_dropout_layer(self.word_embeddings(_tokens(x))).permute(1, 0, 2)
        output, _ = self.lstm_layer(seq)  # zero initial state, as HtFLlib's h_0 / c_0
        state = self.lstm_dropout_layer(output[-1])
        return self.fc(self.fc1(state))


class PositionalEncoding(nn.Module):
    """Sinusoidal table (PyTorch's transformer tutorial), then dropout 0.1."""

    pe: Tensor

    def __init__(self, dim: int, max_len: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term[: dim // 2])
        self.register_buffer("pe", pe)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.pe[:, : x.size(1)])


class TransformerFeatures(nn.Module):
    """HtFLlib's TransformerModel: scaled embedding + positions, ``nlayers`` encoder layers
    (feed-forward 2048, dropout 0.1, post-norm), the first token's output."""

    def __init__(self, vocab_size: int, dim: int, heads: int, layers: int, max_len: int) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(dim, max_len)
        layer = nn.TransformerEncoderLayer(dim, heads, 2048, 0.1, batch_first=True)
        # nn.TransformerEncoder copies one layer, so every layer starts equal, as in HtFLlib
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.hidden_dim = dim
        self.fc = nn.AdaptiveAvgPool1d(dim)
        self.embedding.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pos_encoder(self.embedding(_tokens(x)) * math.sqrt(self.hidden_dim))
        return self.fc(self.encoder(h)[:, 0])


def _text(arch: str, make: Callable[[int, int, int], nn.Module]) -> Callable[..., SplitModel]:
    def build(
        input_shape: tuple[int, ...],
        num_classes: int,
        feature_dim: int = 512,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
    ) -> SplitModel:
        length = token_shape(arch, input_shape)
        check_feature_dim(feature_dim)
        features = make(vocab_size, feature_dim, length)
        return SplitModel(features, feature_dim, num_classes, arch, (length,))

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"HtFLlib's {arch} for token sequences of the input's length."
    return build


def _transformer(heads: int, layers: int, vocab: int, dim: int, length: int) -> nn.Module:
    if dim % heads:
        raise ValueError(f"feature_dim {dim} is not divisible by {heads} attention heads")
    return TransformerFeatures(vocab, dim, heads, layers, max(length, DEFAULT_MAX_LEN))


#: (heads, layers) of the Transformer members of HtFE-txt-5-1/-2/-3 and -6
TRANSFORMER_SHAPES = (
    (8, 1), (8, 2), (8, 4), (8, 8), (8, 16),
    (1, 4), (2, 4), (4, 4), (16, 4),
    (1, 1), (2, 2), (16, 16),
)  # fmt: skip

#: name -> constructor, merged into :data:`htfl.models.ARCHITECTURES`
TEXT_ARCHITECTURES: dict[str, Callable[..., SplitModel]] = {
    "fasttext": _text("fasttext", lambda v, d, _: FastTextFeatures(v, d)),
    "text_logreg": _text("text_logreg", lambda v, d, _: TextLogisticRegressionFeatures(v, d)),
    "lstmnet": _text("lstmnet", lambda v, d, _: RNNFeatures("lstm", v, d)),
    "grunet": _text("grunet", lambda v, d, _: RNNFeatures("gru", v, d)),
    "bilstm": _text("bilstm", lambda v, d, _: BiLSTMFeatures(v, d)),
    **{
        f"transformer_h{h}_l{n}": _text(f"transformer_h{h}_l{n}", partial(_transformer, h, n))
        for h, n in TRANSFORMER_SHAPES
    },
}
