"""LightningModules, one per training objective. Importable without Hydra."""

from seqgen.models.autoencoder import VAE, AutoEncoder
from seqgen.models.base import SeqgenModule
from seqgen.models.classifier import Classifier
from seqgen.models.detector import Detector
from seqgen.models.gan import GAN
from seqgen.models.language_model import LanguageModel
from seqgen.models.node_classifier import NodeClassifier
from seqgen.models.rbm import DBNPretraining
from seqgen.models.sequence_model import SequenceModel
from seqgen.models.translator import Translator

__all__ = ["VAE", "AutoEncoder", "Classifier", "Detector", "DBNPretraining", "GAN", "LanguageModel", "NodeClassifier", "SeqgenModule", "SequenceModel", "Translator"]
