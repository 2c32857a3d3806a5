"""Collaborative filtering: the `implicit` adapter (the only module importing implicit), top-K
neighbour tables, and the training job that writes them into the artifact."""

__all__ = ["implicit_adapter", "neighbours", "job"]
