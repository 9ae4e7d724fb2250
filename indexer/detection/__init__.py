"""Data-free super-weight detection."""
