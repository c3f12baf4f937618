"""What a disk implies for the rest of a service: recreate deploys, no overlapping cron runs, a name of its own."""

from __future__ import annotations

from .spec_dir import SpecDir


def test_a_disk_makes_deploys_recreate(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: indexer
            start: python index.py
            disk: {name: index, mount_path: /var/index, size: 5Gi}
          - name: plain
            start: python plain.py
        """)
    indexer, plain = spec_dir.load().services
    assert indexer.strategy == "recreate"
    assert plain.strategy == "rolling"


def test_a_disk_refuses_a_rolling_strategy_written_out(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: indexer
            start: python index.py
            strategy: rolling
            disk: {mount_path: /var/index}
        """)
    assert spec_dir.error() == (
        "stackblaze.yaml:5: services[0].strategy: a service with a disk is deployed with strategy: recreate, since "
        "a rolling deploy's new replica would share the disk with the old one (remove strategy:, or set strategy: "
        "recreate)")


def test_a_disk_refuses_rolling_settings(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: indexer
            start: python index.py
            rolling: {max_surge: 1}
            disk: {mount_path: /var/index}
        """)
    assert spec_dir.error().startswith("stackblaze.yaml:5: services[0].rolling: a service with a disk is deployed "
                                       "with strategy: recreate")


def test_a_cron_service_with_a_disk_refuses_overlapping_runs(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: nightly
            type: cron
            schedule: "0 3 * * *"
            concurrency: allow
            start: python report.py
            disk: {mount_path: /var/data}
        """)
    assert spec_dir.error() == ("stackblaze.yaml:6: services[0].concurrency: 'allow': two processes would write the "
                                "disk at once (concurrency: forbid, or remove the disk)")


def test_two_services_cannot_share_a_disk_name(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: a
            start: python a.py
            disk: {name: data, mount_path: /var/data}
          - name: b
            start: python b.py
            disk:
              name: data
              mount_path: /var/data
        """)
    assert spec_dir.error() == ("stackblaze.yaml:9: services[1].disk.name: 'data' is already the name of "
                                "services[0]'s disk (give the disk its own name, e.g. name: b-data)")


def test_a_disk_cannot_take_a_backing_service_name(spec_dir: SpecDir) -> None:
    """Both live under disks/<project>/<name>: the worker would write into Redis's data directory."""
    spec_dir.write("""\
        project: acme
        services:
          - name: cache
            type: redis
          - name: w
            start: python w.py
            disk: {name: cache, mount_path: /var/data}
        """)
    assert spec_dir.error() == ("stackblaze.yaml:7: services[1].disk.name: 'cache' is already the name of the redis "
                                "service cache's data (give the disk its own name, e.g. name: w-data)")
