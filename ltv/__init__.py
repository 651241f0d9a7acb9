"""Player LTV core."""
