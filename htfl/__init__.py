"""htfl: heterogeneous federated learning on real edge devices."""

__version__ = "0.1.0"
