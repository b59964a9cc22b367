"""avatar-prep: monocular talking-head videos to head-avatar datasets."""

__version__ = "0.1.0"
