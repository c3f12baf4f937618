"""Autoscaling workers by queue: read the work, decide the count (the HPA's loop), choose who stops."""
