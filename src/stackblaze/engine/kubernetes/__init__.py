"""The Kubernetes engine: manifests.py renders a project as Deployments (pure functions of the spec), fake.py
is a cluster in memory for tests. Nothing here imports the `kubernetes` client yet."""
