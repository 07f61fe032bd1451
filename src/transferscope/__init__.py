"""transferscope: what is being transferred in transfer learning."""

__version__ = "0.1.0"
