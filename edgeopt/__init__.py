"""edgeopt: from a trained compact classifier to a measured edge deployment."""

__version__ = "0.1.0"
