"""A project's Redis and PostgreSQL on this machine: their command lines, data dirs, probes and ports.

The control plane (server/backing.py) prepares a service's disk and command here; the local engine then
supervises the server like any replica (the restart policy, logs, stop signal and grace).
"""
