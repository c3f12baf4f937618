"""Per-runtime detection (python, node, go, ruby) behind `stackblaze.build.detect.detect_plan`."""
