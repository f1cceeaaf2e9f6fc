"""Plain torch architectures: tensors in, tensors out. No Lightning, Hydra or files."""

from seqgen.nets.attention import BahdanauAttention, LuongAttention
from seqgen.nets.autoencoders import AutoEncoderNet, ConvDecoder, ConvNet, DenseDecoder
from seqgen.nets.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from seqgen.nets.graph import GAT, GCN
from seqgen.nets.language import RNNLM, filter_logits, sample_continuation
from seqgen.nets.mlp import MLP, Highway, Maxout, Residual
from seqgen.nets.rbm import DBN, RBM
from seqgen.nets.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell, detach_state
from seqgen.nets.seq2seq import Seq2Seq
from seqgen.nets.sequence import RecurrentHead
from seqgen.nets.text import RecurrentTextClassifier, TextCNN

__all__ = [
    "GAT",
    "GCN",
    "BahdanauAttention",
    "LuongAttention",
    "Seq2Seq",
    "RecurrentTextClassifier",
    "TextCNN",
    "DBN",
    "RBM",
    "AutoEncoderNet",
    "ConvDecoder",
    "ConvNet",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DenseDecoder",
    "MLPDiscriminator",
    "MLPGenerator",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "MLP",
    "Highway",
    "Residual",
    "Maxout",
    "RNN",
    "RNNCell",
    "RNNLM",
    "Recurrent",
    "RecurrentHead",
    "detach_state",
    "filter_logits",
    "sample_continuation",
]
