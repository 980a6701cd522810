"""Model artifacts: versioned, checksummed folders, the champion pointer, management."""
