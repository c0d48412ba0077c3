"""binsight: count the items in warehouse bin photos, and run the whole life of that model."""

__version__ = "0.1.0"
