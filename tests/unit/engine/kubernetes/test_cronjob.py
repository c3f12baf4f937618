"""engine/kubernetes/cronjob.py: a cron service's CronJob validates strictly (1.31..1.35) and says what the
spec says: schedule, time zone, concurrency, deadlines, retries, history, suspension; its pods run once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stackblaze.engine.kubernetes.cronjob import cronjob_for
from stackblaze.engine.kubernetes.manifests import render_manifests
from stackblaze.engine.protocol import Desired
from stackblaze.spec import load_project
from stackblaze.spec.cron import Cron

VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
# Every cron setting away from its default: what the strict validation and the field mapping both read.
EVERY_SETTING = """\
    schedule: "30 2 * * *"
    timezone: Europe/Paris
    concurrency: replace
    timeout: 90.5s
    retries: 3
    history: 4
    catch_up: true
    """


def rendered(tmp_path: Path, settings: str) -> list[dict[str, Any]]:
    extra = textwrap.indent(textwrap.dedent(settings), "    ")
    (tmp_path / "stackblaze.yaml").write_text(
        "project: shop\nenv: {API_KEY: secret-value}\nservices:\n"
        "  - name: email\n    start: python -m worker\n"
        "  - name: nightly\n    type: cron\n    start: python -m app.report --all\n    shutdown_grace: 45s\n"
        + extra)
    return render_manifests(load_project(tmp_path))


def cronjob(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in manifests if m["kind"] == "CronJob")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_cronjob_validates_strictly(tmp_path: Path, version: str) -> None:
    manifests = rendered(tmp_path, EVERY_SETTING)
    assert sorted(m["kind"] for m in manifests) == ["CronJob", "Deployment", "Namespace", "Secret", "Secret"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_cronjob_carries_the_schedule_and_its_policies(tmp_path: Path) -> None:
    job = cronjob(rendered(tmp_path, EVERY_SETTING))
    spec = job["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("30 2 * * *", "Europe/Paris", "Replace")
    assert spec["startingDeadlineSeconds"] == 24 * 3600 and spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 4
    run = spec["jobTemplate"]["spec"]
    assert run["backoffLimit"] == 3 and run["activeDeadlineSeconds"] == 91  # rounded up: never cut short
    pod = run["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 45
    container = pod["containers"][0]
    assert container["args"] == ["python", "-m", "app.report", "--all"]
    assert container["envFrom"] == [{"secretRef": {"name": "shop-nightly-env"}}]
    assert "secret-value" not in str(job)  # the env is in the Secret only


def test_defaults_forbid_and_a_short_deadline_so_missed_ticks_do_not_run_late(tmp_path: Path) -> None:
    spec = cronjob(rendered(tmp_path, 'schedule: "*/5 * * * *"\n'))["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and spec["timeZone"] == "UTC"
    assert spec["startingDeadlineSeconds"] == 60
    assert "activeDeadlineSeconds" not in spec["jobTemplate"]["spec"]
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0


def test_the_engine_suspends_a_suspended_or_stopped_service() -> None:
    def desired(**changes: Any) -> Desired:
        fields: dict[str, Any] = dict(
            project="shop@prod", service="nightly", replicas=1, release=3, cwd="/", start="./report",
            env={"K": "v"}, stop_signal=15, shutdown_grace=30.0, strategy="recreate", config="abc", app="shop",
            namespace="shop", image="registry.local/shop-nightly@sha256:" + "0" * 64, kind="cron",
            cron=Cron(schedule="0 3 * * *"))
        fields.update(changes)
        return Desired(**fields)
    assert cronjob_for(desired())["spec"]["suspend"] is False
    assert cronjob_for(desired(suspended=True))["spec"]["suspend"] is True
    assert cronjob_for(desired(replicas=0))["spec"]["suspend"] is True
    applied = cronjob_for(desired())
    kubernetes_validate.validate(applied, "1.35.0", strict=True)
    assert applied["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["stackblaze.dev/release"] == "3"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_cron_jobs_pods_get_the_backing_services_host_aliases(tmp_path: Path, version: str) -> None:
    """What the engine applies for a cron service of a project with `cache`: its jobs' pods resolve
    cache.internal to the Service's cluster IP, as the workers' pods do (and the manifest stays valid)."""
    from stackblaze.engine.kubernetes.backing import with_job_host_aliases

    job = with_job_host_aliases(cronjob(rendered(tmp_path, 'schedule: "@hourly"\n')), {"cache": "10.96.0.17"})
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["hostAliases"] == [{"ip": "10.96.0.17", "hostnames": ["cache.internal"]}]
    assert pod["restartPolicy"] == "Never"
    kubernetes_validate.validate(job, version, strict=True)
