"""Datasets, annotation readers and transforms."""
