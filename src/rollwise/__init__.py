"""rollwise: progressive delivery with an agent that decides on live evidence."""

__version__ = "0.1.0"
