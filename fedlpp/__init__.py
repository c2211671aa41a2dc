"""FedLPP: federated LoRA fine-tuning with a quantized broadcast, and its privacy benchmark."""

__version__ = "0.1.0"
