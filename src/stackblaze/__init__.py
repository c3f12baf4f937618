"""stackblaze: a self-hosted platform for background workers."""
