"""Storefront: the embeddable recommendation widget and a demo shop that uses it (``pages``)."""

__all__ = ["pages"]
